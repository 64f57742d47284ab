"""The app of the fault suite: a small, real FastAPI app on db_manager, plus its tables.

Built the way an application builds it (``database_lifespan``, ``install_error_handlers``,
``health_router``, ``UowDep`` routes and, with ``telegram=True``, ``telegram_lifespan`` and
``telegram_webhook_router`` with a recording Bot API session). In-process tests call
:func:`build_app`; subprocess tests run ``uvicorn tests.faults.faultapp:create_app --factory``,
configured by the JSON in ``$FAULTS_APP`` (``{"settings": {...}, "telegram": true, ...}``).

Routes
======

``GET /noop``, ``GET /pid``             no database
``GET /pool``                           the main pool's counters (``checkedout`` ...), no database
``GET /items/{id}``                     one SELECT
``GET /read/items/{id}``                the same SELECT on the read path (``ReaderDep``)
``POST /items/{id}/bump``               ``UPDATE ... RETURNING`` then commit
``POST /items/{id}/two``                two statements (SELECT, UPDATE) in one transaction
``GET /sleep?seconds=``                 holds a connection in ``pg_sleep``
``POST /transfer``                      ``{key, account, amount}``: balance += amount and a ledger
                                        row whose ``key`` is unique, checked at COMMIT (deferred)
``POST /transfer/raise``                the same writes, then a handler bug (500)
``POST /transfer/refuse``               the same writes, then ``HTTPException(400)``
``POST /transfer/slow?seconds=``        the same writes, then ``pg_sleep`` (cancelled by clients)
``POST /webhook/telegram``              the bot: a text message writes one ``applied`` row
``GET /health/live``, ``/health/ready`` db_manager's health router
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.types import Message, Update
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import BigInteger, MetaData, String, UniqueConstraint, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings, UnitOfWork
from db_manager.fastapi import (
    OneLineStartupErrors,
    ReaderDep,
    UowDep,
    database_lifespan,
    health_router,
    install_error_handlers,
)
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.store import TelegramUpdate
from db_manager.telegram.webhook import telegram_webhook_router
from tests.support.pools import observer_engine
from tests.support.telegram import RecordingSession

APP_ENV = "FAULTS_APP"
WEBHOOK_PATH = "/webhook/telegram"
BOT_ID = 123456
BOT_TOKEN = f"{BOT_ID}:FAULTS"
WEBHOOK_SECRET = "faults-secret_1"


class FaultsModel(Base):
    __abstract__ = True
    __plugin__ = "faults"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(FaultsModel):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50))
    counter: Mapped[int] = mapped_column(default=0)


class Account(FaultsModel):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class Ledger(FaultsModel):
    """``key`` is unique, checked at COMMIT: a duplicate key fails the commit itself."""

    __tablename__ = "ledger"
    __table_args__ = (
        UniqueConstraint(
            "key", name="uq_faults__ledger_key", deferrable=True, initially="DEFERRED"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    account: Mapped[int]
    amount: Mapped[int]


class Applied(FaultsModel):
    """One row per update a bot handler applied."""

    __tablename__ = "applied"

    id: Mapped[int] = mapped_column(primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger)
    worker_pid: Mapped[int]
    text: Mapped[str] = mapped_column(String(200))


class TransferIn(BaseModel):
    key: str
    account: int
    amount: int


# -- schema and observation (through connections of their own, never the app's) ----------------


async def prepare_database(
    settings: DatabaseSettings, *, items: int = 100, accounts: int = 10, seed_keys: int = 0
) -> None:
    """Create the tables (and db_manager's update table) and seed items and accounts."""
    engine = observer_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(FaultsModel.metadata.create_all)
            await conn.run_sync(TelegramUpdate.__table__.create, checkfirst=True)  # type: ignore[attr-defined]
            if items:
                await conn.execute(
                    insert(Item),
                    [{"id": i, "name": f"item-{i}", "counter": 0} for i in range(1, items + 1)],
                )
            if accounts:
                await conn.execute(
                    insert(Account),
                    [{"id": i, "balance": 0} for i in range(1, accounts + 1)],
                )
            if seed_keys:
                await conn.execute(
                    insert(Ledger),
                    [{"key": f"seed-{i}", "account": 1, "amount": 0} for i in range(seed_keys)],
                )
    finally:
        await engine.dispose()


async def scalar(settings: DatabaseSettings, query: Any) -> Any:
    engine = observer_engine(settings)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(query)).scalar()
    finally:
        await engine.dispose()


async def rows(settings: DatabaseSettings, query: Any) -> list[Any]:
    engine = observer_engine(settings)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(query)).all())
    finally:
        await engine.dispose()


# -- ASGI: cancel the request when the client goes away ---------------------------------------


class CancelOnDisconnect:
    """Cancel the request's handler when the client disconnects (a common production wrapper).

    Uvicorn does not cancel a request whose client went away; with this middleware the
    handler is cancelled mid-query, which is what the UnitOfWork must survive.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[AsgiMessage] = asyncio.Queue()

        async def watch() -> None:
            while True:
                message = await receive()
                await inbox.put(message)
                if message["type"] == "http.disconnect":
                    return

        watcher = asyncio.create_task(watch())

        async def handle() -> None:
            await self.app(scope, inbox.get, send)

        handler = asyncio.create_task(handle())
        try:
            await asyncio.wait({watcher, handler}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():
                handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


class WorkerPidHeader:
    """Add ``X-Worker-Pid`` to every response: which worker process answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (b"x-worker-pid", str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_pid)


# -- the bot ---------------------------------------------------------------------------------------


def build_dispatcher() -> Dispatcher:
    router = Router(name="faults")

    @router.message()
    async def apply(message: Message, uow: UnitOfWork, event_update: Update) -> None:
        uow.session.add(
            Applied(
                update_id=event_update.update_id,
                worker_pid=os.getpid(),
                text=(message.text or "")[:200],
            )
        )
        await uow.session.flush()
        # Hold the transaction a little, so concurrent deliveries of the same update overlap.
        await asyncio.sleep(0.05)

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


def telegram_settings() -> TelegramSettings:
    return TelegramSettings(token=BOT_TOKEN, webhook_secret=WEBHOOK_SECRET)


# -- the app ---------------------------------------------------------------------------------------


def build_app(
    settings: DatabaseSettings,
    *,
    telegram: bool = False,
    cancel_on_disconnect: bool = False,
    ready_timeout: float = 2.0,
) -> FastAPI:
    db_lifespan = database_lifespan(settings, metadata=FaultsModel.metadata)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db_lifespan(app):
            if not telegram:
                yield
                return
            bot_lifespan = telegram_lifespan(
                telegram_settings(), build_dispatcher(), session=RecordingSession()
            )
            async with bot_lifespan(app):
                yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    app.include_router(health_router(ready_timeout=ready_timeout))
    if telegram:
        app.include_router(telegram_webhook_router(WEBHOOK_PATH))
    if cancel_on_disconnect:
        app.add_middleware(CancelOnDisconnect)

    app.add_middleware(WorkerPidHeader)

    @app.get("/noop")
    async def noop() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/pid")
    async def pid() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/pool")
    async def pool(request: Request) -> dict[str, int]:
        engine: AsyncEngine = request.app.state.engine
        queue_pool: Any = engine.pool
        return {
            "checkedout": int(queue_pool.checkedout()),
            "checkedin": int(queue_pool.checkedin()),
            "size": int(queue_pool.size()),
            "overflow": int(queue_pool.overflow()),
        }

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, uow: UowDep) -> dict[str, int]:
        counter = await uow.session.scalar(select(Item.counter).where(Item.id == item_id))
        if counter is None:
            raise HTTPException(404, "no such item")
        return {"id": item_id, "counter": counter}

    @app.get("/read/items/{item_id}")
    async def read_item_reader(item_id: int, reader: ReaderDep) -> dict[str, int]:
        counter = await reader.scalar(select(Item.counter).where(Item.id == item_id))
        if counter is None:
            raise HTTPException(404, "no such item")
        return {"id": item_id, "counter": counter}

    @app.post("/items/{item_id}/bump")
    async def bump(item_id: int, uow: UowDep) -> dict[str, int]:
        counter = await uow.session.scalar(
            update(Item)
            .where(Item.id == item_id)
            .values(counter=Item.counter + 1)
            .returning(Item.counter)
        )
        if counter is None:
            raise HTTPException(404, "no such item")
        return {"id": item_id, "counter": counter}

    @app.post("/items/{item_id}/two")
    async def two_statements(item_id: int, uow: UowDep) -> dict[str, int]:
        before = await uow.session.scalar(select(Item.counter).where(Item.id == item_id))
        if before is None:
            raise HTTPException(404, "no such item")
        await uow.session.execute(
            update(Item).where(Item.id == item_id).values(counter=Item.counter + 1)
        )
        return {"id": item_id, "before": before}

    @app.get("/sleep")
    async def sleep(uow: UowDep, seconds: float = 2.0) -> dict[str, float]:
        await uow.session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        return {"slept": seconds}

    async def transfer_writes(uow: UnitOfWork, body: TransferIn) -> None:
        await uow.session.execute(
            update(Account)
            .where(Account.id == body.account)
            .values(balance=Account.balance + body.amount)
        )
        uow.session.add(Ledger(key=body.key, account=body.account, amount=body.amount))
        await uow.session.flush()

    @app.post("/transfer", status_code=201)
    async def transfer(body: TransferIn, uow: UowDep) -> dict[str, str]:
        await transfer_writes(uow, body)
        return {"key": body.key}

    @app.post("/transfer/raise", status_code=201)
    async def transfer_raise(body: TransferIn, uow: UowDep) -> dict[str, str]:
        await transfer_writes(uow, body)
        raise RuntimeError(f"handler bug after writing {body.key}")

    @app.post("/transfer/refuse", status_code=201)
    async def transfer_refuse(body: TransferIn, uow: UowDep) -> dict[str, str]:
        await transfer_writes(uow, body)
        raise HTTPException(400, "refused after the writes")

    @app.post("/transfer/slow", status_code=201)
    async def transfer_slow(body: TransferIn, uow: UowDep, seconds: float = 30.0) -> dict[str, str]:
        await transfer_writes(uow, body)
        await uow.session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        return {"key": body.key}

    return app


def create_app() -> FastAPI:
    """The factory uvicorn runs in a subprocess (``--factory``), configured by ``$FAULTS_APP``."""
    config = json.loads(os.environ[APP_ENV])
    settings = DatabaseSettings(**config.pop("settings"))
    return build_app(settings, **config)
