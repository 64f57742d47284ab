"""``PaymentRepository``: queries on ``app__payments``. Never commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentStatus

__all__ = ["PaymentRepository"]


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
        """``(count, sum of amounts)`` of the paid payments (all currencies; the app sells XTR)."""
        stmt = select(func.count(), func.coalesce(func.sum(Payment.amount), 0)).where(
            Payment.status == PaymentStatus.PAID.value
        )
        count, total = (await self.session.execute(stmt)).one()
        return int(count), int(total)
