"""The app of the inbox process tests, served by real uvicorn in child processes.

Composed as ``app/main.py`` composes the reference app: ``database_lifespan`` then
``telegram_lifespan`` (a recording Bot API session: the child never reaches Telegram),
``telegram_webhook_router``, ``health_router(details={"inbox": inbox_readiness})``, and a
:class:`~db_manager.drain.Drain` on ``app.state.drain`` with its signal handlers installed in
the lifespan. Configured by the JSON in ``$INBOX_APP``::

    {"database": {...DatabaseSettings fields...},
     "bot": {"processing": "inbox", "workers": 4, "drain_timeout": 5, "poll_interval": 0.5},
     "slow_cap": null}

One message handler: it appends ``(chat_id, update_id, pid)`` to ``inbox_applied`` through the
update's ``uow`` and sleeps 0-20 ms (random); the text ``slow:SECONDS`` sleeps that long
instead (at most ``slow_cap`` seconds when set). It prints ``START <update_id>`` before its
write and ``END <update_id>`` after its sleep, so a test can see from the output which updates
were in flight when the drain began. The tables are created by the test, never by the app.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.types import Message, Update
from fastapi import FastAPI
from sqlalchemy import BigInteger, Integer, MetaData
from sqlalchemy.orm import Mapped, mapped_column

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings, UnitOfWork
from db_manager.drain import Drain
from db_manager.fastapi import (
    OneLineStartupErrors,
    database_lifespan,
    health_router,
    install_error_handlers,
)
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.webhook import inbox_readiness, telegram_webhook_router
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET

__all__ = ["APP_ENV", "WEBHOOK_PATH", "Applied", "InboxTestModel", "build_app", "create_app"]

APP_ENV = "INBOX_APP"
WEBHOOK_PATH = "/webhook/telegram"


class InboxTestModel(Base):
    """The test table lives in a MetaData of its own, never in ``Base.metadata``."""

    __abstract__ = True
    __plugin__ = "inbox_processes_test"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Applied(InboxTestModel):
    """One row per update a handler applied; ``id`` (a sequence) is the order of application."""

    __tablename__ = "inbox_applied"

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    update_id: Mapped[int] = mapped_column(BigInteger)
    pid: Mapped[int] = mapped_column(Integer)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def build_dispatcher(slow_cap: float | None = None) -> Dispatcher:
    router = Router(name="inbox_processes")

    @router.message()
    async def apply(message: Message, uow: UnitOfWork, event_update: Update) -> None:
        text = message.text or ""
        seconds = random.uniform(0.0, 0.02)
        if text.startswith("slow:"):
            seconds = float(text.removeprefix("slow:"))
            if slow_cap is not None:
                seconds = min(seconds, slow_cap)
        _say(f"START {event_update.update_id}")
        uow.session.add(
            Applied(chat_id=message.chat.id, update_id=event_update.update_id, pid=os.getpid())
        )
        await uow.session.flush()
        await asyncio.sleep(seconds)
        _say(f"END {event_update.update_id}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


def build_app(
    database: DatabaseSettings, bot: TelegramSettings, *, slow_cap: float | None = None
) -> FastAPI:
    db_lifespan = database_lifespan(database)
    tg_lifespan = telegram_lifespan(bot, build_dispatcher(slow_cap), session=RecordingSession())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # As app/main.py: SIGTERM turns readiness and the webhook 503 first, in-flight work
        # finishes, then uvicorn stops.
        drain = app.state.drain = Drain()
        drain.install_signal_handlers(timeout=bot.drain_timeout)
        try:
            async with db_lifespan(app), tg_lifespan(app):
                _say(f"READY {os.getpid()}")
                yield
        finally:
            drain.restore_signal_handlers()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    app.include_router(health_router(details={"inbox": inbox_readiness}))
    app.include_router(telegram_webhook_router(WEBHOOK_PATH))

    @app.get("/pid")
    async def pid() -> dict[str, int]:
        return {"pid": os.getpid()}

    return app


def create_app() -> FastAPI:
    """The factory uvicorn runs (``--factory``), configured by ``$INBOX_APP``."""
    config: dict[str, Any] = json.loads(os.environ[APP_ENV])
    database = DatabaseSettings(**config["database"])
    bot = TelegramSettings(token=BOT_TOKEN, webhook_secret=WEBHOOK_SECRET, **config["bot"])
    return build_app(database, bot, slow_cap=config.get("slow_cap"))
