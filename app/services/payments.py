"""Premium in Telegram Stars: the price, the pre-checkout check, recording a payment once.

The price and the invoice payload live here and nowhere else; the bot builds its invoice
from these constants and :func:`validate_pre_checkout` checks against the same ones.
"""

from __future__ import annotations

from functools import partial

from app.models import Payment, PaymentStatus, User
from app.services.limits import column_length, require_amount, require_currency, require_exact
from app.services.novel import ensure_novel_state
from app.services.savepoint import insert_once
from app.unit_of_work import AppUnitOfWork

__all__ = [
    "PREMIUM_CURRENCY",
    "PREMIUM_DESCRIPTION",
    "PREMIUM_PAYLOAD",
    "PREMIUM_PRICE_XTR",
    "PREMIUM_TITLE",
    "record_successful_payment",
    "unlocks_premium",
    "validate_pre_checkout",
]

PREMIUM_CURRENCY = "XTR"  # Telegram Stars
PREMIUM_PRICE_XTR = 50
PREMIUM_PAYLOAD = "premium_unlock"
PREMIUM_TITLE = "Premium: the Drowned Archive"
PREMIUM_DESCRIPTION = "Unlock the premium branch of the story, once and for good."


def unlocks_premium(payload: str) -> bool:
    """Whether a successful payment with this invoice payload unlocks premium."""
    return payload == PREMIUM_PAYLOAD


async def validate_pre_checkout(
    uow: AppUnitOfWork, telegram_id: int, payload: str, amount: int, currency: str
) -> str | None:
    """None if the checkout may go on, else the error message to show the user."""
    if payload != PREMIUM_PAYLOAD:
        return "This invoice is not valid any more; send /buy for a new one."
    if currency != PREMIUM_CURRENCY or amount != PREMIUM_PRICE_XTR:
        return (
            f"The price is {PREMIUM_PRICE_XTR} Telegram Stars and this invoice does not match it; "
            "send /buy for a new one."
        )
    user = await uow.users.get_by_telegram_id(telegram_id)
    if user is None:
        return "Send /start first, then /buy."
    state = await uow.novel_states.get_for_user(user.id)
    if state is not None and state.premium:
        return "You already have premium; there is nothing to pay."
    return None


async def record_successful_payment(
    uow: AppUnitOfWork,
    user: User,
    amount: int,
    currency: str,
    payload: str,
    telegram_charge_id: str,
    provider_charge_id: str | None = None,
) -> tuple[Payment, bool]:
    """Record a successful payment once and unlock premium; return ``(payment, created)``.

    The same ``telegram_charge_id`` twice (a redelivered update, or two workers at once)
    yields one row: the unique constraint decides, inside a SAVEPOINT, and the second call
    returns the first call's row with ``created=False``. Premium is unlocked when
    :func:`unlocks_premium` says so for the payload.

    Raises :class:`~app.services.errors.InvalidInput` before any statement when a value
    does not fit its column: the amount must be in ``1..2**63-1``, the currency three
    capital letters, the payload and charge ids within their lengths and without NUL
    (they are identifiers, so they are refused rather than cut).
    """
    require_amount(amount)
    require_currency(currency)
    require_exact(payload, column_length(Payment.invoice_payload), "invoice payload")
    charge_length = column_length(Payment.telegram_payment_charge_id)
    require_exact(telegram_charge_id, charge_length, "telegram payment charge id")
    if provider_charge_id is not None:
        provider_length = column_length(Payment.provider_payment_charge_id)
        require_exact(provider_charge_id, provider_length, "provider payment charge id")
    existing = await uow.payments.get_by_charge_id(telegram_charge_id)
    if existing is not None:
        return existing, False
    payment = Payment(
        user_id=user.id,
        amount=amount,
        currency=currency,
        invoice_payload=payload,
        telegram_payment_charge_id=telegram_charge_id,
        provider_payment_charge_id=provider_charge_id,
        status=PaymentStatus.PAID.value,
    )
    if not await insert_once(uow.session, partial(uow.payments.add, payment)):
        existing = await uow.payments.get_by_charge_id(telegram_charge_id)
        if existing is None:  # pragma: no cover - the constraint that refused us was not ours
            raise RuntimeError(f"payment {telegram_charge_id!r} was refused by the database")
        return existing, False
    if unlocks_premium(payload):
        state = await ensure_novel_state(uow, user)
        state.premium = True
        await uow.session.flush()
    return payment, True
