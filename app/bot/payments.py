"""``/buy`` in Telegram Stars, pre-checkout validation, and the successful payment.

The thank-you for a payment goes through the outbox (:mod:`app.bot.outbox`): it commits
with the payment and is delivered after the commit, retried while Telegram is down, where
a webhook answer is fire-and-forget (Telegram reports no failure of it).
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.methods import AnswerPreCheckoutQuery, SendInvoice, SendMessage
from aiogram.types import LabeledPrice, Message, PreCheckoutQuery

from app.bot.outbox import Outbox
from app.services import (
    PREMIUM_CURRENCY,
    PREMIUM_DESCRIPTION,
    PREMIUM_PAYLOAD,
    PREMIUM_PRICE_XTR,
    PREMIUM_TITLE,
    record_successful_payment,
    unlocks_premium,
    validate_pre_checkout,
)
from app.unit_of_work import AppUnitOfWork

__all__ = ["build_router"]


async def buy(message: Message, uow: AppUnitOfWork) -> SendInvoice | SendMessage | None:
    if message.from_user is None:
        return None
    problem = await validate_pre_checkout(
        uow, message.from_user.id, PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR, PREMIUM_CURRENCY
    )
    if problem is not None:
        return message.answer(problem)
    return message.answer_invoice(
        title=PREMIUM_TITLE,
        description=PREMIUM_DESCRIPTION,
        payload=PREMIUM_PAYLOAD,
        currency=PREMIUM_CURRENCY,
        prices=[LabeledPrice(label=PREMIUM_TITLE, amount=PREMIUM_PRICE_XTR)],
    )


async def pre_checkout(query: PreCheckoutQuery, uow: AppUnitOfWork) -> AnswerPreCheckoutQuery:
    problem = await validate_pre_checkout(
        uow, query.from_user.id, query.invoice_payload, query.total_amount, query.currency
    )
    if problem is None:
        return query.answer(ok=True)
    return query.answer(ok=False, error_message=problem)


async def successful_payment(message: Message, uow: AppUnitOfWork, outbox: Outbox) -> None:
    payment = message.successful_payment
    if payment is None or message.from_user is None:
        return
    chat_id = message.chat.id
    user = await uow.users.get_by_telegram_id(message.from_user.id)
    if user is None:
        # Telegram only charges after a pre-checkout we approved for a known user.
        text = "Payment received, but your account is unknown; send /start."
        await outbox.send(SendMessage(chat_id=chat_id, text=text))
        return
    _payment, created = await record_successful_payment(
        uow,
        user,
        amount=payment.total_amount,
        currency=payment.currency,
        payload=payment.invoice_payload,
        telegram_charge_id=payment.telegram_payment_charge_id,
        provider_charge_id=payment.provider_payment_charge_id or None,
    )
    if not created:
        return  # a repeat of a recorded payment: it was thanked for already
    if unlocks_premium(payment.invoice_payload):
        text = "Thank you! The premium branch of the story is unlocked."
    else:
        text = "Thank you! Your payment was received."
    await outbox.send(SendMessage(chat_id=chat_id, text=text))


def build_router() -> Router:
    """A new router each time: an aiogram Router belongs to one dispatcher."""
    router = Router(name="payments")
    router.message.register(buy, Command("buy"))
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, F.successful_payment)
    return router
