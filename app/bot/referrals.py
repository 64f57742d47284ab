"""``/ref``: the user's referral link and how many joined through it."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.methods import SendMessage
from aiogram.types import Message

from app.services import referral_link_code
from app.unit_of_work import AppUnitOfWork

__all__ = ["build_router"]


async def referral_link(message: Message, uow: AppUnitOfWork, bot: Bot) -> SendMessage | None:
    if message.from_user is None:
        return None
    user = await uow.users.get_by_telegram_id(message.from_user.id)
    if user is None:
        return message.answer("Send /start first.")
    code = await referral_link_code(uow, user)
    joined = await uow.users.count_referrals(user.id)
    me = await bot.me()
    link = f"https://t.me/{me.username}?start={code}"
    return message.answer(f"Your invitation link: {link}\nJoined through it: {joined}")


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="referrals")
    router.message.register(referral_link, Command("ref"))
    return router
