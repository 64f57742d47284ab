"""``PaymentRepository``: queries on ``app__payments``. Never commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentStatus

__all__ = ["PaymentRepository"]

_HALF_BITS = 32
_HALF = 2**_HALF_BITS
_TOTALS = select(
    func.count(),
    func.coalesce(func.sum(Payment.amount // _HALF), 0),
    func.coalesce(func.sum(Payment.amount % _HALF), 0),
).where(Payment.status == PaymentStatus.PAID.value)


class PaymentRepository:
    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_charge_id(self, telegram_payment_charge_id: str) -> Payment | None:
        stmt = select(Payment).where(
            Payment.telegram_payment_charge_id == telegram_payment_charge_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, payment: Payment) -> Payment:
        """Add ``payment`` and flush (a duplicate charge id raises IntegrityError here)."""
        self.session.add(payment)
        await self.session.flush()
        return payment

    async def list_for_user(self, user_id: int) -> Sequence[Payment]:
        """The user's payments, oldest first."""
        stmt = (
            select(Payment)
            .where(Payment.user_id == user_id)
            .order_by(Payment.created_at, Payment.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def totals(self) -> tuple[int, int]:
        """``(count, sum of amounts)`` of the paid payments (all currencies; the app sells XTR).

        Exact for any amounts the app accepts (``1..2**63-1``): SQLite's ``sum()`` of
        integers fails with "integer overflow" past 2**63 - 1, so the amounts are summed in
        two halves, ``amount / 2**32`` and ``amount % 2**32``. Each half sum fits a 64-bit
        integer for up to 2**31 rows, and Python adds them up without bound. One statement,
        the same on both backends.
        """
        count, high, low = (await self.session.execute(_TOTALS)).one()
        return int(count), (int(high) << _HALF_BITS) + int(low)
