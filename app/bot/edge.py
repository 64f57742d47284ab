"""The bot's edge: an update whose ids the database cannot hold is refused before any work.

Registered as an outer middleware of ``dispatcher.update``, so it runs before db_manager's
unit-of-work middleware (whose first statement records the update id) and after aiogram's
own context middleware (which finds the sender, ``event_from_user``).

Refused, with one log line and no traceback, and acknowledged (the webhook answers 200:
Telegram retrying the same bytes would be refused the same way):

* an update id outside ``0..2**63-1``, a sender id outside ``1..2**63-1``, a chat or
  thread id beyond a BIGINT, an over-long business connection id (aiogram's FSM keys
  the conversation state by these, so they reach a statement on every update);
* any :class:`~app.services.InvalidInput` a service raises (its unit of work rolls back).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Dispatcher
from aiogram.dispatcher.middlewares.user_context import EVENT_CONTEXT_KEY, EventContext
from aiogram.types import TelegramObject, Update

from app.services import InvalidInput
from app.services.limits import is_bigint, is_telegram_user_id, is_update_id

__all__ = ["EdgeLimits", "setup_edge"]

log = structlog.get_logger("app.bot.edge")

# Telegram's business connection ids are short strings; the state table keeps 255.
_CONNECTION_ID_MAX = 255


class EdgeLimits(BaseMiddleware):
    """Refuse updates with out-of-range ids, and updates a service refused as invalid."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        update_id = event.update_id if isinstance(event, Update) else None
        if update_id is not None and not is_update_id(update_id):
            return _refused(update_id, "update_id", "not in 0..2**63-1")
        context: EventContext | None = data.get(EVENT_CONTEXT_KEY)
        problem = None if context is None else _context_problem(context)
        if problem is not None:
            return _refused(update_id, *problem)
        try:
            return await handler(event, data)
        except InvalidInput as exc:
            return _refused(update_id, exc.field, exc.reason)


def _context_problem(context: EventContext) -> tuple[str, str] | None:
    """What is wrong with the ids aiogram found in the update (its sender, chat, thread,
    business connection: the keys of the conversation state), or None."""
    if context.user is not None and not is_telegram_user_id(context.user.id):
        return "user id", "not in 1..2**63-1"
    if context.chat is not None and not is_bigint(context.chat.id):
        return "chat id", "beyond 64 bits"
    if context.thread_id is not None and not is_bigint(context.thread_id):
        return "thread id", "beyond 64 bits"
    connection = context.business_connection_id
    if connection is not None and (len(connection) > _CONNECTION_ID_MAX or "\x00" in connection):
        return "business connection id", f"longer than {_CONNECTION_ID_MAX} or NUL"
    return None


def _refused(update_id: int | None, field: str, reason: str) -> None:
    # The value itself is not logged: it is the attacker's text, possibly megabytes of it.
    log.warning("update refused at the edge", update_id=update_id, field=field, reason=reason)
    return None


def setup_edge(dispatcher: Dispatcher) -> None:
    """Register :class:`EdgeLimits` (after aiogram's own outer middlewares)."""
    dispatcher.update.outer_middleware(EdgeLimits())
