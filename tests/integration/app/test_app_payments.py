"""Payments: recorded once per charge id (also concurrently), premium unlocked; pre-checkout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from app.models import Payment, User
from app.repositories import PaymentRepository
from app.services import (
    PREMIUM_CURRENCY,
    PREMIUM_PAYLOAD,
    PREMIUM_PRICE_XTR,
    record_successful_payment,
    validate_pre_checkout,
)
from app.unit_of_work import AppUnitOfWork
from db_manager import UnitOfWorkFactory

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
    make_user_fixture,
    story_fixture,
    uow_factory_fixture,
)

MakeUser = Callable[[int], Awaitable[User]]


async def _record(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    telegram_id: int,
    charge_id: str,
    payload: str = PREMIUM_PAYLOAD,
) -> tuple[int, bool]:
    async with uow_factory() as uow:
        user = await uow.users.get_by_telegram_id(telegram_id)
        assert user is not None
        payment, created = await record_successful_payment(
            uow, user, PREMIUM_PRICE_XTR, PREMIUM_CURRENCY, payload, charge_id, "provider-1"
        )
        return payment.id, created


async def _payments(uow_factory: UnitOfWorkFactory[AppUnitOfWork]) -> int:
    async with uow_factory() as uow:
        return await uow.session.scalar(select(func.count()).select_from(Payment)) or 0


async def _premium(uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User) -> bool:
    async with uow_factory() as uow:
        state = await uow.novel_states.get_for_user(user.id)
        return state is not None and state.premium


async def test_payment_is_recorded_and_unlocks_premium(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    user = await make_user(1)
    assert not await _premium(uow_factory, user)
    payment_id, created = await _record(uow_factory, 1, "charge-1")
    assert created
    assert await _premium(uow_factory, user)
    async with uow_factory() as uow:
        payment = await uow.payments.get_by_charge_id("charge-1")
        assert payment is not None and payment.id == payment_id
        assert (payment.user_id, payment.amount, payment.currency, payment.status) == (
            user.id,
            PREMIUM_PRICE_XTR,
            "XTR",
            "paid",
        )
        assert payment.provider_payment_charge_id == "provider-1"
        assert payment.created_at.tzinfo is not None


async def test_the_same_charge_twice_makes_one_payment(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    await make_user(1)
    first = await _record(uow_factory, 1, "charge-1")
    second = await _record(uow_factory, 1, "charge-1")
    assert first[1] and not second[1]
    assert first[0] == second[0]
    assert await _payments(uow_factory) == 1


async def test_two_concurrent_records_of_one_charge_make_one_payment(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    user = await make_user(1)
    results = await asyncio.gather(
        _record(uow_factory, 1, "charge-race"), _record(uow_factory, 1, "charge-race")
    )
    assert len({payment_id for payment_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]
    assert await _payments(uow_factory) == 1
    assert await _premium(uow_factory, user)


async def test_losing_the_insert_race_returns_the_winners_row(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deterministic on every backend: the first lookup misses a row that is already there,
    so the INSERT hits the unique constraint inside the SAVEPOINT and the transaction goes on."""
    await make_user(1)
    winner, _ = await _record(uow_factory, 1, "charge-1")
    real = PaymentRepository.get_by_charge_id
    calls: list[str] = []

    async def miss_once(self: PaymentRepository, charge_id: str) -> Payment | None:
        calls.append(charge_id)
        return None if len(calls) == 1 else await real(self, charge_id)

    monkeypatch.setattr(PaymentRepository, "get_by_charge_id", miss_once)
    async with uow_factory() as uow:
        user = await uow.users.get_by_telegram_id(1)
        assert user is not None
        payment, created = await record_successful_payment(
            uow, user, 1, "XTR", PREMIUM_PAYLOAD, "charge-1", None
        )
        # The outer transaction survived the failed INSERT: it can still write.
        user.username = "still-writable"
    assert len(calls) == 2
    assert (payment.id, created) == (winner, False)
    assert await _payments(uow_factory) == 1
    async with uow_factory() as uow:
        stored = await uow.users.get_by_telegram_id(1)
        assert stored is not None and stored.username == "still-writable"


async def test_a_payment_for_another_product_does_not_unlock_premium(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    user = await make_user(1)
    _, created = await _record(uow_factory, 1, "charge-tip", payload="tip")
    assert created
    assert not await _premium(uow_factory, user)


async def test_pre_checkout_accepts_the_premium_invoice(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    await make_user(1)
    async with uow_factory() as uow:
        assert (
            await validate_pre_checkout(uow, 1, PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR, "XTR") is None
        )


@pytest.mark.parametrize(
    ("telegram_id", "payload", "amount", "currency", "fragment"),
    [
        (1, "something_else", PREMIUM_PRICE_XTR, "XTR", "/buy"),
        (1, PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR - 1, "XTR", str(PREMIUM_PRICE_XTR)),
        (1, PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR, "USD", str(PREMIUM_PRICE_XTR)),
        (999, PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR, "XTR", "/start"),
    ],
    ids=["wrong-payload", "wrong-amount", "wrong-currency", "unknown-user"],
)
async def test_pre_checkout_refuses_a_wrong_invoice_with_a_message(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    make_user: MakeUser,
    telegram_id: int,
    payload: str,
    amount: int,
    currency: str,
    fragment: str,
) -> None:
    await make_user(1)
    async with uow_factory() as uow:
        message = await validate_pre_checkout(uow, telegram_id, payload, amount, currency)
    assert message is not None and fragment in message


async def test_pre_checkout_refuses_a_second_purchase(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    await make_user(1)
    await _record(uow_factory, 1, "charge-1")
    async with uow_factory() as uow:
        message = await validate_pre_checkout(uow, 1, PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR, "XTR")
    assert message is not None and "already" in message
