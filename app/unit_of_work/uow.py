"""``AppUnitOfWork``: db_manager's UnitOfWork with the app's repositories as attributes.

::

    async with database.uow_factory() as uow:
        user = await uow.users.get_by_telegram_id(42)

A repository is built on first access, over :attr:`session`; building it creates the
session object but no connection; the first statement does (the UnitOfWork stays lazy).
Accessing a repository outside the ``async with`` block raises ``UnitOfWorkStateError``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.repositories import (
    NovelMessageRepository,
    NovelStateRepository,
    PaymentRepository,
    ReferralRepository,
    UserRepository,
)
from db_manager import UnitOfWork

__all__ = ["AppUnitOfWork"]


class AppUnitOfWork(UnitOfWork):
    """One transaction over the app's tables; repositories are created lazily."""

    # The base class uses __slots__; so do we (no per-instance __dict__).
    __slots__ = ("_novel_messages", "_novel_states", "_payments", "_referrals", "_users")

    _users: UserRepository | None
    _referrals: ReferralRepository | None
    _payments: PaymentRepository | None
    _novel_states: NovelStateRepository | None
    _novel_messages: NovelMessageRepository | None

    def __init__(self, bind: AsyncEngine | async_sessionmaker[AsyncSession]) -> None:
        super().__init__(bind)
        self._users = None
        self._referrals = None
        self._payments = None
        self._novel_states = None
        self._novel_messages = None

    # Each property asks for self.session first: it raises when the unit of work is not
    # active, so a repository kept from a closed unit of work cannot be reached through it.

    @property
    def users(self) -> UserRepository:
        session = self.session
        if self._users is None:
            self._users = UserRepository(session)
        return self._users

    @property
    def referrals(self) -> ReferralRepository:
        session = self.session
        if self._referrals is None:
            self._referrals = ReferralRepository(session)
        return self._referrals

    @property
    def payments(self) -> PaymentRepository:
        session = self.session
        if self._payments is None:
            self._payments = PaymentRepository(session)
        return self._payments

    @property
    def novel_states(self) -> NovelStateRepository:
        session = self.session
        if self._novel_states is None:
            self._novel_states = NovelStateRepository(session)
        return self._novel_states

    @property
    def novel_messages(self) -> NovelMessageRepository:
        session = self.session
        if self._novel_messages is None:
            self._novel_messages = NovelMessageRepository(session)
        return self._novel_messages
