"""The app of the webhook tests: FastAPI + database_lifespan + telegram_lifespan.

The app is built the way an application builds it (nested lifespans, error handlers, the
webhook router, an HTTP route using ``UowDep``); Telegram is replaced only by the public
``session=`` argument (a :class:`~tests.support.telegram.RecordingSession`). Each test gets a
fresh database on the parametrized backend (``db_settings``: SQLite and PostgreSQL).

Handlers of the test bot (all record ``(name, update_id)`` in ``harness.calls`` on entry):

========================  =========================================================
``/start [code]``          writes an ``start`` event, returns ``message.answer(...)``
successful payment         writes a ``payment`` event keyed by the charge id, replies
``boom``                   writes a ``boom`` event, flushes, then raises
``key:<k>``                writes an event with the unique key ``<k>``, replies
``menu``                   replies with an inline keyboard (no DB)
``slow``                   writes, holds the transaction 50 ms, replies
``cut``                    writes, flushes, runs ``harness.before_commit`` (cuts the DB)
``swallow``                writes, swallows any error, replies
``file``                   returns ``SendDocument`` with an in-memory file (no DB)
``no-db``                  replies without touching the database
other text                 writes a ``text`` event
edited message             writes an ``edited`` event
callback query             answers the query (no DB)
pre-checkout query         answers ok (no DB)
========================  =========================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.methods import AnswerCallbackQuery, AnswerPreCheckoutQuery, SendDocument, SendMessage
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PreCheckoutQuery,
    Update,
)
from fastapi import FastAPI
from sqlalchemy import BigInteger, MetaData, String, event, func, select
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings, UnitOfWork
from db_manager.fastapi import (
    OneLineStartupErrors,
    UowDep,
    database_lifespan,
    health_router,
    install_error_handlers,
)
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.store import TelegramUpdate
from db_manager.telegram.webhook import telegram_webhook_router
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, encode, secret_header

WEBHOOK_PATH = "/webhook/telegram"


class WebhookTestModel(Base):
    """The test tables live in a MetaData of their own, never in ``Base.metadata``."""

    __abstract__ = True
    __plugin__ = "webhook_test"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Event(WebhookTestModel):
    """One effect of a handler (or of an HTTP request)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    update_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    key: Mapped[str | None] = mapped_column(String(64), unique=True)
    detail: Mapped[str | None] = mapped_column(String(200))


Hook = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


@dataclass
class Harness:
    """A running app, its client, and the ways to look at what happened."""

    app: FastAPI
    client: httpx.AsyncClient
    session: RecordingSession
    dispatcher: Dispatcher
    observer: AsyncEngine
    calls: list[tuple[str, int]]
    lifecycle: list[str]
    seen: dict[str, list[Any]]
    checkouts: list[int] = field(default_factory=lambda: [0])
    before_commit: list[Hook] = field(default_factory=lambda: [_nothing])

    @property
    def engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.app.state.engine
        return engine

    @property
    def checked_out(self) -> int:
        """Connections of the app's pool in use right now."""
        return int(self.engine.pool.checkedout())  # type: ignore[attr-defined]

    @property
    def checkout_count(self) -> int:
        """Connections checked out of the app's pool since the app started."""
        return self.checkouts[0]

    async def post(
        self,
        update: dict[str, Any] | bytes,
        *,
        secret: str | bytes | None = WEBHOOK_SECRET,
        headers: dict[str, str | bytes] | None = None,
    ) -> httpx.Response:
        body = update if isinstance(update, bytes) else encode(update)
        sent: dict[str, str | bytes] = {"Content-Type": "application/json"}
        if secret is not None:
            sent.update(secret_header(secret))
        sent.update(headers or {})
        # httpx takes bytes values (sent as they are: how a non-ASCII header is made).
        raw = [
            (name.encode(), v if isinstance(v, bytes) else v.encode()) for name, v in sent.items()
        ]
        return await self.client.post(WEBHOOK_PATH, content=body, headers=raw)

    async def events(self, kind: str | None = None) -> list[Event]:
        """Committed events, read through a connection of a separate engine."""
        query = select(Event).order_by(Event.id)
        if kind is not None:
            query = query.where(Event.kind == kind)
        async with self.observer.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Event(**row._mapping) for row in rows]

    async def count_events(self, kind: str | None = None) -> int:
        query = select(func.count()).select_from(Event)
        if kind is not None:
            query = query.where(Event.kind == kind)
        async with self.observer.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def recorded_updates(self) -> list[int]:
        """Update ids in ``db_manager__telegram_updates`` (committed)."""
        async with self.observer.connect() as conn:
            result = await conn.execute(
                select(TelegramUpdate.update_id).order_by(TelegramUpdate.update_id)
            )
            return [int(value) for value in result.scalars()]

    def calls_of(self, name: str) -> list[int]:
        return [update_id for handler, update_id in self.calls if handler == name]


def build_router(harness_calls: list[tuple[str, int]], seen: dict[str, list[Any]]) -> Router:
    router = Router(name="webhook-test")
    hooks: dict[str, Any] = {}

    def called(name: str, update: Update) -> None:
        harness_calls.append((name, update.update_id))

    @router.message(CommandStart())
    async def start(
        message: Message,
        command: CommandObject,
        uow: UnitOfWork,
        uow_factory: Any,
        event_update: Update,
    ) -> SendMessage:
        called("start", event_update)
        seen.setdefault("uow_factory", []).append(uow_factory)
        seen.setdefault("uow", []).append(uow)
        assert message.from_user is not None
        uow.session.add(
            Event(
                kind="start",
                update_id=event_update.update_id,
                user_id=message.from_user.id,
                detail=command.args,
            )
        )
        return message.answer(f"Welcome, {message.from_user.first_name}!")

    @router.message(F.successful_payment)
    async def paid(message: Message, uow: UnitOfWork, event_update: Update) -> SendMessage:
        called("paid", event_update)
        payment = message.successful_payment
        assert payment is not None and message.from_user is not None
        uow.session.add(
            Event(
                kind="payment",
                update_id=event_update.update_id,
                user_id=message.from_user.id,
                key=payment.telegram_payment_charge_id,
                detail=f"{payment.invoice_payload}:{payment.total_amount}{payment.currency}",
            )
        )
        return message.answer("Thank you!")

    @router.message(F.text == "boom")
    async def boom(message: Message, uow: UnitOfWork, event_update: Update) -> None:
        called("boom", event_update)
        uow.session.add(Event(kind="boom", update_id=event_update.update_id))
        await uow.session.flush()  # the row really reached the database before the error
        raise RuntimeError("handler bug in boom")

    @router.message(F.text.startswith("key:"))
    async def keyed(message: Message, uow: UnitOfWork, event_update: Update) -> SendMessage:
        called("keyed", event_update)
        assert message.text is not None
        uow.session.add(Event(kind="keyed", update_id=event_update.update_id, key=message.text[4:]))
        return message.answer("saved")  # flushed, and so refused, only at the commit

    @router.message(F.text == "slow")
    async def slow(message: Message, uow: UnitOfWork, event_update: Update) -> SendMessage:
        called("slow", event_update)
        uow.session.add(Event(kind="slow", update_id=event_update.update_id))
        await uow.session.flush()
        await asyncio.sleep(0.05)  # hold the transaction: concurrent deliveries pile up
        return message.answer("done")

    @router.message(F.text == "cut")
    async def cut(message: Message, uow: UnitOfWork, event_update: Update) -> SendMessage:
        called("cut", event_update)
        uow.session.add(Event(kind="cut", update_id=event_update.update_id))
        await uow.session.flush()
        await hooks["before_commit"][0]()
        return message.answer("cut")

    @router.message(F.text == "swallow")
    async def swallow(message: Message, uow: UnitOfWork, event_update: Update) -> SendMessage:
        called("swallow", event_update)
        try:
            uow.session.add(Event(kind="swallow", update_id=event_update.update_id))
            await uow.session.flush()
        except Exception:  # noqa: S110 - the point: a handler that hides every error
            pass
        return message.answer("swallowed")

    @router.message(F.text == "file")
    async def file(message: Message, event_update: Update) -> SendDocument:
        called("file", event_update)
        return message.answer_document(BufferedInputFile(b"report body", filename="report.txt"))

    @router.message(F.text == "menu")
    async def menu(message: Message, event_update: Update) -> SendMessage:
        called("menu", event_update)
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Next", callback_data="next")]]
        )
        return message.answer("Choose:", reply_markup=keyboard, disable_notification=True)

    @router.message(F.text == "no-db")
    async def no_db(message: Message, event_update: Update) -> SendMessage:
        called("no-db", event_update)
        return message.answer("pong")

    @router.message(F.text)
    async def text(message: Message, uow: UnitOfWork, event_update: Update) -> None:
        called("text", event_update)
        uow.session.add(Event(kind="text", update_id=event_update.update_id, detail=message.text))

    @router.edited_message()
    async def edited(message: Message, uow: UnitOfWork, event_update: Update) -> None:
        called("edited", event_update)
        uow.session.add(Event(kind="edited", update_id=event_update.update_id, detail=message.text))

    @router.callback_query()
    async def pressed(query: CallbackQuery, event_update: Update) -> AnswerCallbackQuery:
        called("pressed", event_update)
        return query.answer(f"pressed {query.data}")

    @router.pre_checkout_query()
    async def pre_checkout(query: PreCheckoutQuery, event_update: Update) -> AnswerPreCheckoutQuery:
        called("pre_checkout", event_update)
        return query.answer(ok=True)

    router.hooks = hooks  # type: ignore[attr-defined]
    return router


def build_dispatcher(
    calls: list[tuple[str, int]], lifecycle: list[str], seen: dict[str, list[Any]]
) -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher.include_router(build_router(calls, seen))

    @dispatcher.startup()
    async def on_startup(bot: Bot) -> None:
        lifecycle.append(f"startup:{bot.id}")

    @dispatcher.shutdown()
    async def on_shutdown(bot: Bot) -> None:
        lifecycle.append(f"shutdown:{bot.id}")

    return dispatcher


def build_app(
    db_settings: DatabaseSettings,
    telegram_settings: TelegramSettings,
    dispatcher: Dispatcher,
    session: RecordingSession,
    checkouts: list[int],
) -> FastAPI:
    """The app as an application composes it: database lifespan, then the bot's inside."""
    db_lifespan = database_lifespan(db_settings)
    tg_lifespan = telegram_lifespan(telegram_settings, dispatcher, session=session)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db_lifespan(app):
            engine: AsyncEngine = app.state.engine
            async with engine.begin() as conn:
                await conn.run_sync(WebhookTestModel.metadata.create_all)

            def count_checkout(
                _dbapi: DBAPIConnection, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
            ) -> None:
                checkouts[0] += 1

            checkouts[0] = 0
            event.listen(engine.sync_engine, "checkout", count_checkout)
            async with tg_lifespan(app):
                yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    app.include_router(health_router())
    app.include_router(telegram_webhook_router(WEBHOOK_PATH))

    @app.post("/http/events", status_code=201)
    async def create_event(uow: UowDep) -> dict[str, str]:
        uow.session.add(Event(kind="http"))
        return {"status": "created"}

    @app.get("/http/ping")
    async def ping() -> dict[str, str]:
        return {"status": "pong"}

    return app


def telegram_settings(**overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {"token": BOT_TOKEN, "webhook_secret": WEBHOOK_SECRET}
    values.update(overrides)
    return TelegramSettings(**values)


HarnessFactory = Callable[..., AbstractAsyncContextManager[Harness]]
