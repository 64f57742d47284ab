"""Response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

__all__ = ["PaymentOut", "StatsOut", "UserOut"]


class UserOut(BaseModel):
    telegram_id: int
    username: str | None
    first_name: str | None
    last_name: str | None
    language_code: str | None
    created_at: datetime
    referrer_telegram_id: int | None
    referral_code: str | None
    referral_count: int
    scene: str | None
    premium: bool


class PaymentOut(BaseModel):
    amount: int
    currency: str
    status: str
    invoice_payload: str
    telegram_payment_charge_id: str
    created_at: datetime


class StatsOut(BaseModel):
    users: int
    referrals: int
    payments: int
    payments_sum: int
