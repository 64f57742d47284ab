"""``/start`` and ``/start <code>``: register, attach the referrer, show the current scene.

When someone joins through a user's link, the referrer gets a notice through the outbox
(:mod:`app.bot.outbox`): enqueued with the new referral, sent after the commit, never for
a referral that was rolled back; a referrer who blocked the bot gets none.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.methods import SendMessage
from aiogram.types import Message

from app.bot.keyboards import scene_keyboard
from app.bot.outbox import Outbox
from app.models import User
from app.services import ReferralResult, attach_referrer, register_user, show_scene
from app.story import Story
from app.unit_of_work import AppUnitOfWork

__all__ = ["build_router"]


_REFERRAL_NOTES = {
    ReferralResult.ATTACHED: "You joined through a friend's link. Welcome!",
    ReferralResult.UNKNOWN_CODE: "That invitation link is not valid; starting anyway.",
}


async def start(
    message: Message, command: CommandObject, uow: AppUnitOfWork, story: Story, outbox: Outbox
) -> SendMessage | None:
    sender = message.from_user
    if sender is None:
        return None
    user, _created = await register_user(
        uow,
        sender.id,
        username=sender.username,
        first_name=sender.first_name,
        last_name=sender.last_name,
        language_code=sender.language_code,
        story=story,
    )
    note = None
    if command.args:
        result = await attach_referrer(uow, user, command.args.strip())
        note = _REFERRAL_NOTES.get(result)
        if result is ReferralResult.ATTACHED:
            await _notify_referrer(uow, outbox, user)
    incoming = message.text or "/start"
    scene = await show_scene(uow, user, story, incoming=incoming)
    text = f"{note}\n\n{scene.text}" if note else scene.text
    return message.answer(text, reply_markup=scene_keyboard(scene))


async def _notify_referrer(uow: AppUnitOfWork, outbox: Outbox, joined: User) -> None:
    if joined.referrer_id is None:  # pragma: no cover - ATTACHED sets it
        return
    referrer = await uow.users.get(joined.referrer_id)  # loaded by the attach: no query
    if referrer is None or not referrer.reachable:
        return
    who = joined.first_name or "Someone"
    text = f"{who} joined through your invitation link. Thank you for spreading the story!"
    await outbox.send(SendMessage(chat_id=referrer.telegram_id, text=text))


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="start")
    router.message.register(start, CommandStart())
    return router
