"""Broadcast: one message to every reachable user, enqueued in the caller's transaction.

The messages are not sent here: each goes into the outbox (one row per user) in the
caller's unit of work, so a broadcast is all enqueued or, rolled back, none of it; the
outbox sender then delivers them within Telegram's flood limits, after the commit. Users
who blocked the bot (see :mod:`app.services.reachability`) are skipped; a 403 on one of
these messages marks its user unreachable for the next broadcast.
"""

from __future__ import annotations

from typing import Protocol

from app.services.errors import InvalidInput
from app.unit_of_work import AppUnitOfWork

__all__ = ["BROADCAST_MAX_LENGTH", "TextOutbox", "broadcast", "check_broadcast_text"]

# Telegram's limit for one message's text.
BROADCAST_MAX_LENGTH = 4096


class TextOutbox(Protocol):
    """Where the messages go: enqueues a text message to a chat in the caller's transaction
    (:class:`app.bot.outbox.BotOutbox` over db_manager's outbox)."""

    async def send_text(self, chat_id: int, text: str) -> None: ...


def check_broadcast_text(text: str) -> str:
    """``text`` if Telegram can send it as one message, else :class:`InvalidInput`: 1 to
    4096 characters, not only white space, no NUL (which PostgreSQL's JSONB cannot hold)."""
    if not text.strip():
        raise InvalidInput("text", "empty or only white space")
    if len(text) > BROADCAST_MAX_LENGTH:
        raise InvalidInput("text", f"longer than {BROADCAST_MAX_LENGTH} characters")
    if "\x00" in text:
        raise InvalidInput("text", "contains NUL")
    return text


async def broadcast(uow: AppUnitOfWork, outbox: TextOutbox, text: str) -> int:
    """Enqueue ``text`` for every reachable user; return how many messages were enqueued.

    Nothing is sent before ``uow`` commits. One INSERT per user, in the caller's transaction:
    fit for the thousands; a far larger audience wants batches of their own transactions.
    """
    check_broadcast_text(text)
    count = 0
    async for telegram_id in uow.users.reachable_telegram_ids():
        await outbox.send_text(telegram_id, text)
        count += 1
    return count
