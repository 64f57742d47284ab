"""Repositories: one per model, queries only. They never commit; the UnitOfWork does."""

from app.repositories.novel_messages import NovelMessageRepository
from app.repositories.novel_states import NovelStateRepository
from app.repositories.payments import PaymentRepository
from app.repositories.referrals import ReferralRepository
from app.repositories.users import UserOverview, UserRepository

__all__ = [
    "NovelMessageRepository",
    "NovelStateRepository",
    "PaymentRepository",
    "ReferralRepository",
    "UserOverview",
    "UserRepository",
]
