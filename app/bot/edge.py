"""The bot's edge: an update whose ids the database cannot hold is refused before any work.

Registered as an outer middleware of ``dispatcher.update``, so it runs before db_manager's
unit-of-work middleware (whose first statement records the update id) and after aiogram's
own context middleware (which finds the sender, ``event_from_user``).

Refused, with one log line and no traceback, and acknowledged (the webhook answers 200:
Telegram retrying the same bytes would be refused the same way):

* an update id outside ``0..2**63-1`` or a sender id outside ``1..2**63-1``;
* any :class:`~app.services.InvalidInput` a service raises (its unit of work rolls back).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Dispatcher
from aiogram.types import TelegramObject, Update, User

from app.services import InvalidInput
from app.services.limits import is_telegram_user_id, is_update_id

__all__ = ["EdgeLimits", "setup_edge"]

log = structlog.get_logger("app.bot.edge")


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
        sender: User | None = data.get("event_from_user")
        if sender is not None and not is_telegram_user_id(sender.id):
            return _refused(update_id, "user id", "not in 1..2**63-1")
        try:
            return await handler(event, data)
        except InvalidInput as exc:
            return _refused(update_id, exc.field, exc.reason)


def _refused(update_id: int | None, field: str, reason: str) -> None:
    # The value itself is not logged: it is the attacker's text, possibly megabytes of it.
    log.warning("update refused at the edge", update_id=update_id, field=field, reason=reason)
    return None


def setup_edge(dispatcher: Dispatcher) -> None:
    """Register :class:`EdgeLimits` (after aiogram's own outer middlewares)."""
    dispatcher.update.outer_middleware(EdgeLimits())
