"""``/ref``: the user's referral link and how many joined through it.

The link needs the bot's username. It is fetched once per process, in the background of
the dispatcher's startup (``getMe``, see :class:`BotUsername`), and kept in the
dispatcher's workflow data (``bot_username``), so ``/ref`` makes no Bot API call while it is
handled. Until that answer came (Telegram unreachable at start), ``/ref`` asks itself
(aiogram's ``bot.me()`` keeps the answer).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiogram import Bot, Dispatcher, Router
from aiogram.exceptions import AiogramError
from aiogram.filters import Command
from aiogram.methods import SendMessage
from aiogram.types import Message

from app.services import referral_link_code
from app.unit_of_work import AppUnitOfWork

__all__ = ["BOT_USERNAME_KEY", "BotUsername", "build_router"]

log = structlog.get_logger("app.bot.referrals")

BOT_USERNAME_KEY = "bot_username"  # in the dispatcher's workflow data, so in handler data


class BotUsername:
    """Fetches the bot's username once per process and keeps it in ``bot_username``.

    Its startup handler only starts the ``getMe`` (a task): a Bot API that is slow or
    unreachable at start never delays the start. Until it answered, ``/ref`` asks itself.
    """

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.startup.register(self.on_startup)
        dispatcher.shutdown.register(self.on_shutdown)

    async def on_startup(self, bot: Bot, dispatcher: Dispatcher) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fetch(bot, dispatcher))

    async def on_shutdown(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _fetch(bot: Bot, dispatcher: Dispatcher) -> None:
        try:
            me = await bot.me()
        except AiogramError as exc:  # the Bot API unreachable, failing, or answering garbage
            log.warning("getMe failed at startup; /ref will ask again", error=type(exc).__name__)
            return
        dispatcher.workflow_data[BOT_USERNAME_KEY] = me.username


async def referral_link(
    message: Message, uow: AppUnitOfWork, bot: Bot, bot_username: str | None = None
) -> SendMessage | None:
    if message.from_user is None:
        return None
    user = await uow.users.get_by_telegram_id(message.from_user.id)
    if user is None:
        return message.answer("Send /start first.")
    code = await referral_link_code(uow, user)
    joined = await uow.users.count_referrals(user.id)
    if bot_username is None:  # the startup's getMe has not answered (yet)
        bot_username = (await bot.me()).username
    link = f"https://t.me/{bot_username}?start={code}"
    return message.answer(f"Your invitation link: {link}\nJoined through it: {joined}")


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="referrals")
    router.message.register(referral_link, Command("ref"))
    return router
