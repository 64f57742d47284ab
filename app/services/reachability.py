"""Whether the bot can write to a user: a user who blocked the bot is unreachable.

Two sources say so: Telegram's ``my_chat_member`` update (the user blocked the bot, or
unblocked it), and the Bot API refusing a message with 403 (seen by the outbox sender).
Unreachable users are skipped by broadcasts; an unblock, or any later ``/start``, makes
them reachable again.
"""

from __future__ import annotations

from app.models import utcnow
from app.services.limits import require_telegram_user_id
from app.unit_of_work import AppUnitOfWork

__all__ = ["mark_reachable", "mark_unreachable"]


async def mark_unreachable(uow: AppUnitOfWork, telegram_id: int) -> bool:
    """The user (if known) is unreachable from now on; an earlier mark keeps its time.
    True if this changed the user."""
    require_telegram_user_id(telegram_id)
    return await uow.users.set_unreachable(telegram_id, utcnow())


async def mark_reachable(uow: AppUnitOfWork, telegram_id: int) -> bool:
    """The user (if known) is reachable again. True if this changed the user."""
    require_telegram_user_id(telegram_id)
    return await uow.users.set_unreachable(telegram_id, None)
