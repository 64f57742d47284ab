"""Who the bot can reach: ``my_chat_member`` updates and the outbox's 403s.

* A private chat's ``my_chat_member`` update with the bot's new status ``kicked`` (the
  user blocked the bot) marks the user unreachable; ``member`` (unblocked, or started
  again) makes them reachable.
* :func:`forbidden_hook` builds the outbox sender's ``on_forbidden``: a 403 on a message to
  a private chat (blocked, deactivated) marks that user unreachable, in a unit of work of
  its own, after the sender committed the row as dead.

Unreachable users are skipped by broadcasts (:func:`app.services.broadcast`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiogram import Router
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.types import ChatMemberUpdated

from app.services import mark_reachable, mark_unreachable
from app.services.limits import is_telegram_user_id
from app.unit_of_work import AppUnitOfWork
from db_manager.uow import UnitOfWorkFactory

__all__ = ["build_router", "forbidden_hook"]

log = structlog.get_logger("app.bot.reachability")


async def bot_status_changed(event: ChatMemberUpdated, uow: AppUnitOfWork) -> None:
    if event.chat.type != ChatType.PRIVATE:
        return  # groups and channels: the bot's membership there is no user's reachability
    user_id = event.chat.id  # a private chat's id is its user's id
    status = event.new_chat_member.status
    if status == ChatMemberStatus.KICKED:
        if await mark_unreachable(uow, user_id):
            log.info("user blocked the bot; unreachable", telegram_id=user_id)
    elif status == ChatMemberStatus.MEMBER and await mark_reachable(uow, user_id):
        log.info("user unblocked the bot; reachable", telegram_id=user_id)


def forbidden_hook(
    uow_factory: Callable[[], UnitOfWorkFactory[AppUnitOfWork]],
) -> Callable[[int, str], Awaitable[None]]:
    """The outbox's ``on_forbidden(chat_id, description)``; ``uow_factory()`` gives the
    process's factory (``app.state.uow_factory``, known once the lifespan started)."""

    async def on_forbidden(chat_id: int, description: str) -> None:
        if not is_telegram_user_id(chat_id):
            return  # a group or channel refused the bot: no user to mark
        async with uow_factory()() as uow:
            changed = await mark_unreachable(uow, chat_id)
        if changed:
            log.info(
                "the Bot API refused a message (403); user unreachable",
                telegram_id=chat_id,
                reason=description,  # Telegram's description, the token redacted by the sender
            )

    return on_forbidden


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="reachability")
    router.my_chat_member.register(bot_status_changed)
    return router
