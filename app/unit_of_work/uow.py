"""``AppUnitOfWork``: db_manager's UnitOfWork with the app's repositories as attributes.

::

    async with database.uow_factory() as uow:
        user = await uow.users.get_by_telegram_id(42)

A repository is built on first access, over :attr:`session`; building it creates the
session object but no connection; the first statement does (the UnitOfWork stays lazy).
Accessing a repository outside the ``async with`` block raises ``UnitOfWorkStateError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar, overload

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.repositories import (
    NovelMessageRepository,
    NovelStateRepository,
    PaymentRepository,
    ReferralRepository,
    UserRepository,
)
from db_manager import UnitOfWork

__all__ = ["AppUnitOfWork", "repository"]

_R = TypeVar("_R")


# Lower case, as it is used like ``property``.
class repository(Generic[_R]):
    """``users = repository(UserRepository)``: a repository attribute of the unit of work.

    On first access in a unit of work it builds ``build(uow.session)`` and keeps it (one
    repository per unit of work). Every access asks for ``uow.session`` first, which raises
    ``UnitOfWorkStateError`` when the unit of work is not active: a repository kept from a
    closed unit of work cannot be reached through it.
    """

    __slots__ = ("_build", "_name")

    def __init__(self, build: Callable[[AsyncSession], _R]) -> None:
        self._build = build
        self._name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, uow: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, uow: AppUnitOfWork, owner: type[Any]) -> _R: ...

    def __get__(self, uow: AppUnitOfWork | None, owner: type[Any]) -> Self | _R:
        if uow is None:
            return self
        session = uow.session
        built: _R | None = uow._repositories.get(self._name)
        if built is None:
            built = uow._repositories[self._name] = self._build(session)
        return built


class AppUnitOfWork(UnitOfWork):
    """One transaction over the app's tables; repositories are created lazily."""

    # The base class uses __slots__; so do we (no per-instance __dict__).
    __slots__ = ("_repositories",)

    users = repository(UserRepository)
    referrals = repository(ReferralRepository)
    payments = repository(PaymentRepository)
    novel_states = repository(NovelStateRepository)
    novel_messages = repository(NovelMessageRepository)

    def __init__(self, bind: AsyncEngine | async_sessionmaker[AsyncSession]) -> None:
        super().__init__(bind)
        # Built repositories by attribute name (values are of that attribute's type).
        self._repositories: dict[str, Any] = {}
