"""Choice buttons: advance the story, edit the message to the next scene, answer the button."""

from __future__ import annotations

import structlog
from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, Message

from app.bot.keyboards import ChoiceCallback, scene_keyboard
from app.services import ChoiceNotAvailable, PremiumRequired, advance_story
from app.story import Story
from app.unit_of_work import AppUnitOfWork

__all__ = ["build_router"]

log = structlog.get_logger("app.bot.story")


async def choose(
    callback: CallbackQuery,
    callback_data: ChoiceCallback,
    uow: AppUnitOfWork,
    story: Story,
    bot: Bot,
) -> AnswerCallbackQuery:
    user = await uow.users.get_by_telegram_id(callback.from_user.id)
    if user is None:
        return callback.answer("Send /start first.", show_alert=True)
    try:
        scene = await advance_story(uow, user, callback_data.id, story)
    except (ChoiceNotAvailable, PremiumRequired) as exc:
        return callback.answer(str(exc), show_alert=True)

    message = callback.message
    markup = scene_keyboard(scene)

    async def show_next_scene() -> None:
        # After the commit: the user never sees a scene whose state was not saved.
        if isinstance(message, Message):
            try:
                await bot.edit_message_text(
                    text=scene.text,
                    chat_id=message.chat.id,
                    message_id=message.message_id,
                    reply_markup=markup,
                )
                return
            except TelegramBadRequest as exc:
                if "message is not modified" in exc.message:
                    return  # it already shows this scene
                # Too old to edit, deleted meanwhile, ...: the state moved on, so the user
                # must see the new scene (and its buttons) anyway, as a new message.
                log.info("scene edit refused; sending it", scene=scene.id, error=exc.message)
        # An inaccessible message (older than 48 hours) cannot be edited either.
        await bot.send_message(callback.from_user.id, scene.text, reply_markup=markup)

    uow.on_commit(show_next_scene)
    return callback.answer()


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="story")
    router.callback_query.register(choose, ChoiceCallback.filter())
    return router
