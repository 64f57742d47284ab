"""``/feedback``: a conversation kept in aiogram's FSM, its state in the update's transaction.

Ask, wait for the answer, confirm, store::

    reader: /feedback            bot: What did you think of the story? ...
    reader: Loved the ending     bot: You wrote: "Loved the ending". Send it? (yes / no)
    reader: yes                  bot: Thank you! Your feedback is saved.

The state lives in db_manager's ``SqlAlchemyStorage``, so it survives a restart and is shared
by every worker, and the stored feedback and the cleared state commit together: a failed
update leaves the reader at the confirmation step with nothing stored. ``/cancel`` leaves
the conversation at any step.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import Message

from app.models.feedback import FEEDBACK_MAX_LENGTH
from app.repositories.feedback import FeedbackRepository
from app.services.limits import without_nul
from app.unit_of_work import AppUnitOfWork

__all__ = ["FeedbackForm", "build_router"]

_YES = {"yes", "y", "send", "ok"}
_NO = {"no", "n"}


class FeedbackForm(StatesGroup):
    text = State()
    confirm = State()


async def ask(message: Message, state: FSMContext) -> SendMessage:
    await state.set_state(FeedbackForm.text)
    return message.answer("What did you think of the story? Write a few words (or /cancel).")


async def cancel(message: Message, state: FSMContext) -> SendMessage:
    await state.clear()
    return message.answer("Cancelled. Nothing was stored.")


async def answered(message: Message, state: FSMContext) -> SendMessage:
    # NUL would break the state's JSONB and the text column on PostgreSQL (see limits).
    text = without_nul(message.text or "").strip()
    if not text:
        return message.answer("Please write your feedback as text (or /cancel).")
    if len(text) > FEEDBACK_MAX_LENGTH:
        return message.answer(f"Please keep it under {FEEDBACK_MAX_LENGTH} characters.")
    await state.update_data(feedback=text)
    await state.set_state(FeedbackForm.confirm)
    return message.answer(f'You wrote: "{text}". Send it? (yes / no)')


async def confirmed(message: Message, state: FSMContext, uow: AppUnitOfWork) -> SendMessage:
    reply = (message.text or "").strip().lower()
    if reply in _NO:
        await state.set_state(FeedbackForm.text)
        return message.answer("Then write it again (or /cancel).")
    if reply not in _YES:
        return message.answer("Please answer yes or no.")
    text = await state.get_value("feedback")
    sender = message.from_user
    if sender is None or not isinstance(text, str):
        await state.clear()
        return message.answer("Something went missing; please start again with /feedback.")
    await FeedbackRepository(uow.session).add(sender.id, text)
    await state.clear()
    return message.answer("Thank you! Your feedback is saved.")


def build_router() -> Router:
    """A new router each time; include it before routers that take any text."""
    router = Router(name="conversation")
    router.message.register(ask, Command("feedback"))
    router.message.register(cancel, Command("cancel"), StateFilter(FeedbackForm))
    router.message.register(answered, StateFilter(FeedbackForm.text), ~F.text.startswith("/"))
    router.message.register(confirmed, StateFilter(FeedbackForm.confirm), F.text)
    return router
