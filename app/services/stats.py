"""Read-only views for the HTTP API: a user's profile, their payments, global numbers.

Each function takes an ``AsyncSession`` and only reads (no referral link or state is
created), so the session of a read-only snapshot (``reader.snapshot()``) serves them, and
so does a unit of work's ``uow.session``. The queries are the repositories' own, built over
that session. They return plain frozen dataclasses, not ORM objects; the HTTP API uses
them as its response models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.repositories import PaymentRepository, UserRepository

__all__ = ["PaymentInfo", "Stats", "UserProfile", "stats", "user_payments", "user_profile"]


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A user as the profile page shows them."""

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


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    """One recorded payment."""

    amount: int
    currency: str
    status: str
    invoice_payload: str
    telegram_payment_charge_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Stats:
    """Global numbers: users, referred users, paid payments and the sum of their amounts."""

    users: int
    referrals: int  # users who came through a referral link
    payments: int
    payments_sum: int


async def user_profile(session: AsyncSession, telegram_id: int) -> UserProfile | None:
    """The profile of the user with this Telegram id, or None if there is none."""
    overview = await UserRepository(session).get_overview(telegram_id)
    if overview is None:
        return None
    user = overview.user
    return UserProfile(
        telegram_id=user.telegram_id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        language_code=user.language_code,
        created_at=user.created_at,
        referrer_telegram_id=overview.referrer_telegram_id,
        referral_code=overview.referral_code,
        referral_count=overview.referral_count,
        # A state created before the story was known has no scene yet (NOT_STARTED).
        scene=overview.scene or None,
        premium=overview.premium,
    )


async def user_payments(session: AsyncSession, telegram_id: int) -> list[PaymentInfo] | None:
    """The user's payments, oldest first; None if there is no such user."""
    user = await UserRepository(session).get_by_telegram_id(telegram_id)
    if user is None:
        return None
    return [
        PaymentInfo(
            amount=p.amount,
            currency=p.currency,
            status=p.status,
            invoice_payload=p.invoice_payload,
            telegram_payment_charge_id=p.telegram_payment_charge_id,
            created_at=p.created_at,
        )
        for p in await PaymentRepository(session).list_for_user(user.id)
    ]


async def stats(session: AsyncSession) -> Stats:
    """Users, referred users, paid payments and their sum (from one view when ``session``
    is a snapshot's)."""
    users = UserRepository(session)
    count, total = await PaymentRepository(session).totals()
    return Stats(
        users=await users.count(),
        referrals=await users.count_referred(),
        payments=count,
        payments_sum=total,
    )
