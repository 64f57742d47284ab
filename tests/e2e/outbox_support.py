"""Waiting for what the app sends through its outbox, and test settings for the sender.

The story's scenes, payment thank-yous, referral notices and broadcasts leave through the
outbox: the webhook (or the API) answers first, the sender delivers after the commit. A test
therefore waits for the call to arrive at the Bot API (a :class:`RecordingSession` or the
:class:`~tests.support.fake_bot_api.FakeBotApi`) instead of reading it from the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager.telegram import TelegramSettings
from tests.support.fake_bot_api import Call, FakeBotApi
from tests.support.telegram import RecordedRequest, RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET

__all__ = [
    "FAST_SENDER",
    "bot_settings",
    "delivered",
    "outbox_rows",
    "outbox_settled",
    "recorded",
    "started",
]

C = TypeVar("C")

# The sender's flood limits, loose enough that a test of a few messages per chat is not
# paced by the 1 s of a private chat (the limits themselves have tests of their own), and
# a retry backoff of tens of milliseconds.
FAST_SENDER: dict[str, Any] = {
    "private_chat_rate": 100.0,
    "group_chat_rate": 100.0,
    "bot_rate": 300.0,
    "retry_base": 0.02,
    "retry_max": 0.2,
    "poll_interval": 0.2,
}


def bot_settings(**overrides: Any) -> TelegramSettings:
    """``[bot]`` with the test token and secret and a fast sender."""
    values: dict[str, Any] = {
        "token": SecretStr(BOT_TOKEN),
        "webhook_secret": SecretStr(WEBHOOK_SECRET),
        **FAST_SENDER,
        **overrides,
    }
    return TelegramSettings(**values)


async def recorded(
    session: RecordingSession, name: str, count: int = 1, *, timeout: float = 10.0
) -> list[RecordedRequest]:
    """The ``name`` calls the session recorded, once there are at least ``count``."""
    return await _at_least(
        lambda: session.calls(name), count, timeout, name, lambda: session.method_names
    )


async def started(session: RecordingSession, *, timeout: float = 10.0) -> None:
    """Wait for the startup's ``getMe`` (the bot's username, fetched in the background),
    then forget it: a test starts with an empty record."""
    await recorded(session, "getMe", timeout=timeout)
    session.clear()


async def outbox_rows(db: AsyncEngine) -> list[tuple[str, str, Any]]:
    """``(method, status, chat_key)`` of every outbox row, in enqueue order."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT method, status, chat_key FROM db_manager__telegram_outbox ORDER BY id")
        )
        return [(str(method), str(status), chat) for method, status, chat in rows]


async def outbox_settled(db: AsyncEngine, *, timeout: float = 10.0) -> list[tuple[str, str, Any]]:
    """The outbox rows once none is pending (every call sent or dead)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await outbox_rows(db)
        if all(status != "pending" for _, status, _ in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox rows still pending after {timeout} s: {rows}")
        await asyncio.sleep(0.01)


async def delivered(
    fake: FakeBotApi,
    method: str,
    count: int = 1,
    *,
    chat_id: int | None = None,
    timeout: float = 10.0,
) -> list[Call]:
    """The ``method`` calls the fake answered ok (to ``chat_id``), once at least ``count``."""
    return await _at_least(
        lambda: fake.delivered(method, chat_id),
        count,
        timeout,
        f"delivered {method}",
        lambda: [(c.method, c.status) for c in fake.calls],
    )


async def _at_least(
    look: Callable[[], list[C]],
    count: int,
    timeout: float,
    what: str,
    every_call: Callable[[], object],
) -> list[C]:
    """``look()`` once it returns at least ``count`` ``what`` calls, polled every 5 ms; past
    ``timeout`` seconds an ``AssertionError`` that shows ``every_call()``."""
    deadline = time.monotonic() + timeout
    while True:
        calls = look()
        if len(calls) >= count:
            return calls
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {count} {what} call(s) within {timeout} s, got {len(calls)}; "
                f"all calls: {every_call()}"
            )
        await asyncio.sleep(0.005)
