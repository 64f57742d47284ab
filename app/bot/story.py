"""Choice buttons: advance the story, show the next scene through the outbox, answer the button.

The next scene is enqueued in the update's transaction (:mod:`app.bot.outbox`): committed
with the new state, delivered by the outbox sender after the commit (retried while
Telegram is down), never shown if the state was rolled back; the webhook answers the
button without waiting for it.

* The button's message is accessible: the scene replaces it in place (``editMessageText``).
* It is inaccessible (older than 48 hours, ``InaccessibleMessage``): there is nothing to
  edit, so the scene comes as a new message.
* An edit Telegram refuses (400: "message is not modified", "message can't be edited", the
  message was deleted meanwhile) cannot be answered here, as the handler is long done: the
  outbox row ends ``dead`` with Telegram's description (logged by the sender; an operator
  can retry it with ``db_manager.telegram.outbox.retry_dead``). The state moved on
  regardless; the old message's buttons then answer "not available", and ``/start`` shows
  the current scene with its buttons. "Not modified" means the message already shows this
  scene: nothing is lost.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from aiogram.types import CallbackQuery, Message

from app.bot.keyboards import ChoiceCallback, scene_keyboard
from app.bot.outbox import Outbox
from app.services import ChoiceNotAvailable, PremiumRequired, advance_story
from app.story import Story
from app.unit_of_work import AppUnitOfWork

__all__ = ["build_router"]


async def choose(
    callback: CallbackQuery,
    callback_data: ChoiceCallback,
    uow: AppUnitOfWork,
    story: Story,
    outbox: Outbox,
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
    if isinstance(message, Message):
        await outbox.send(
            EditMessageText(
                text=scene.text,
                chat_id=message.chat.id,
                message_id=message.message_id,
                reply_markup=markup,
            )
        )
    else:
        await outbox.send(
            SendMessage(chat_id=callback.from_user.id, text=scene.text, reply_markup=markup)
        )
    return callback.answer()


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="story")
    router.callback_query.register(choose, ChoiceCallback.filter())
    return router
