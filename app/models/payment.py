"""``Payment``: one successful Telegram payment, unique by Telegram's charge id."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import AppModel, created_at_column

__all__ = ["Payment", "PaymentStatus"]


class PaymentStatus(enum.StrEnum):
    PAID = "paid"
    REFUNDED = "refunded"


class Payment(AppModel):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app__users.id", ondelete="CASCADE"), index=True
    )
    # 64-bit on every backend (INTEGER is 32-bit on PostgreSQL); the app accepts 1..2**63-1.
    amount: Mapped[int] = mapped_column(BigInteger)
    # Telegram Stars; other ISO 4217 codes fit as well.
    currency: Mapped[str] = mapped_column(String(8), default="XTR", server_default="XTR")
    invoice_payload: Mapped[str] = mapped_column(String(128))
    # The unique constraint is what makes recording a payment idempotent, also across workers.
    telegram_payment_charge_id: Mapped[str] = mapped_column(String(255), unique=True)
    provider_payment_charge_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(
        String(16), default=PaymentStatus.PAID.value, server_default=PaymentStatus.PAID.value
    )
    created_at: Mapped[datetime] = created_at_column()

    def __repr__(self) -> str:
        return (
            f"<Payment id={self.id} user_id={self.user_id} {self.amount} {self.currency} "
            f"{self.status}>"
        )
