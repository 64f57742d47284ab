"""Read-only views for the HTTP API: a user's profile, their payments, global numbers.

These functions only read (no referral link or state is created), so they suit a
read-only unit of work. They return plain frozen dataclasses, not ORM objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.models import NovelState, ReferralLink, User
from app.unit_of_work import AppUnitOfWork

__all__ = ["PaymentInfo", "Stats", "UserProfile", "stats", "user_payments", "user_profile"]


@dataclass(frozen=True, slots=True)
class UserProfile:
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
    amount: int
    currency: str
    status: str
    invoice_payload: str
    telegram_payment_charge_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Stats:
    users: int
    referrals: int  # users who came through a referral link
    payments: int
    payments_sum: int


async def user_profile(uow: AppUnitOfWork, telegram_id: int) -> UserProfile | None:
    """The profile of the user with this Telegram id, or None if there is none."""
    referrer = User.__table__.alias("referrer")
    stmt = (
        select(
            User, referrer.c.telegram_id, ReferralLink.code, NovelState.scene, NovelState.premium
        )
        .outerjoin(referrer, referrer.c.id == User.referrer_id)
        .outerjoin(ReferralLink, ReferralLink.owner_id == User.id)
        .outerjoin(NovelState, NovelState.user_id == User.id)
        .where(User.telegram_id == telegram_id)
    )
    row = (await uow.session.execute(stmt)).one_or_none()
    if row is None:
        return None
    user, referrer_telegram_id, code, scene, premium = row
    return UserProfile(
        telegram_id=user.telegram_id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        language_code=user.language_code,
        created_at=user.created_at,
        referrer_telegram_id=referrer_telegram_id,
        referral_code=code,
        referral_count=await uow.users.count_referrals(user.id),
        scene=scene or None,
        premium=bool(premium),
    )


async def user_payments(uow: AppUnitOfWork, telegram_id: int) -> list[PaymentInfo] | None:
    """The user's payments, oldest first; None if there is no such user."""
    user = await uow.users.get_by_telegram_id(telegram_id)
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
        for p in await uow.payments.list_for_user(user.id)
    ]


async def stats(uow: AppUnitOfWork) -> Stats:
    """Users, referred users, paid payments and their sum."""
    count, total = await uow.payments.totals()
    return Stats(
        users=await uow.users.count(),
        referrals=await uow.users.count_referred(),
        payments=count,
        payments_sum=total,
    )
