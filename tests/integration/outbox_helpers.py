"""What the outbox tests share: the test bot's settings against a fake Bot API server, a
started database, a running sender, and waiting on the rows and the calls the fake received.

The fixtures ``fake`` and ``pg_db`` are in ``tests/integration/conftest.py``. The crash
test's sender process (``outbox_child.py``) imports :func:`bot_settings` too, so this module
imports nothing of pytest's (``FakeBotApi`` only for the types).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from sqlalchemy import select

from db_manager import Database, DatabaseSettings, UnitOfWork
from db_manager.telegram import TelegramSettings, build_bot
from db_manager.telegram.outbox import OutboxMessage
from db_manager.telegram.sender import OutboxSender
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from tests.support.fake_bot_api import FakeBotApi

__all__ = [
    "BOT_ID",
    "TOKEN",
    "Running",
    "bot_settings",
    "rows",
    "running_sender",
    "sent_texts",
    "settled",
    "started_database",
    "until",
]

TOKEN = "123456:TEST-outbox-secret-token"
BOT_ID = int(TOKEN.split(":")[0])


@asynccontextmanager
async def started_database(settings: DatabaseSettings) -> AsyncIterator[Database[UnitOfWork]]:
    """A started database with every table created; disposed on exit."""
    database = Database(settings)
    await database.start()
    await database.create_all()
    try:
        yield database
    finally:
        await database.dispose()


def bot_settings(api_server: str, **overrides: Any) -> TelegramSettings:
    """The test bot against the Bot API server at ``api_server``, with a fast sender."""
    values: dict[str, Any] = {
        "token": TOKEN,
        "webhook_secret": "s",
        "api_server": api_server,
        "poll_interval": 0.2,
        "retry_base": 0.05,
        "retry_max": 0.2,
    }
    values.update(overrides)
    return TelegramSettings(**values)


class Running:
    """A started sender and its bot; stopped (and the bot's session closed) on exit."""

    def __init__(self, sender: OutboxSender, bot: Bot) -> None:
        self.sender = sender
        self.bot = bot

    async def __aenter__(self) -> OutboxSender:
        await self.sender.start()
        return self.sender

    async def __aexit__(self, *exc: object) -> None:
        await self.sender.stop(2.0)
        await self.bot.session.close()


def running_sender(
    database: Database[UnitOfWork],
    fake: FakeBotApi,
    *,
    on_forbidden: Callable[[int, str], Awaitable[None]] | None = None,
    max_in_flight: int = 8,
    **overrides: Any,
) -> Running:
    settings = bot_settings(fake.base_url, **overrides)
    bot = build_bot(settings)
    sender = OutboxSender(
        bot, database.engine, settings, on_forbidden=on_forbidden, max_in_flight=max_in_flight
    )
    return Running(sender, bot)


async def rows(database: Database[UnitOfWork]) -> list[OutboxMessage]:
    async with database.uow_factory() as uow:
        result = await uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return list(result)


def sent_texts(fake: FakeBotApi, chat_id: int | None = None) -> list[str]:
    """The texts of every ``sendMessage`` call received (failed ones too), in order."""
    return [
        call.params["text"]
        for call in fake.calls
        if call.method == "sendMessage"
        and (chat_id is None or call.params.get("chat_id") == chat_id)
    ]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    async def check() -> bool:
        return condition()

    return await wait_for(check, timeout, interval=0.02)


async def settled(database: Database[UnitOfWork], *, timeout: float = 10.0) -> bool:
    """True once no row is pending."""

    async def check() -> bool:
        return all(row.status != "pending" for row in await rows(database))

    return await wait_for(check, timeout, interval=0.05)
