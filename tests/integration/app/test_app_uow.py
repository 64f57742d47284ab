"""AppUnitOfWork: repositories as lazy attributes; no connection before the first statement."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.pool import QueuePool

from app.repositories import (
    NovelMessageRepository,
    NovelStateRepository,
    PaymentRepository,
    ReferralRepository,
    UserRepository,
)
from app.unit_of_work import AppUnitOfWork
from db_manager import Database, UnitOfWorkStateError

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
)

REPOSITORIES: dict[str, type[Any]] = {
    "users": UserRepository,
    "referrals": ReferralRepository,
    "payments": PaymentRepository,
    "novel_states": NovelStateRepository,
    "novel_messages": NovelMessageRepository,
}


def _checked_out(db: Database[AppUnitOfWork]) -> int:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def test_repositories_are_attributes_sharing_the_units_session(
    app_db: Database[AppUnitOfWork],
) -> None:
    async with app_db.uow_factory() as uow:
        for name, cls in REPOSITORIES.items():
            repository = getattr(uow, name)
            assert isinstance(repository, cls)
            assert repository.session is uow.session
            assert getattr(uow, name) is repository  # built once per unit of work


async def test_touching_repositories_opens_no_connection_until_a_statement_runs(
    app_db: Database[AppUnitOfWork],
) -> None:
    assert _checked_out(app_db) == 0
    async with app_db.uow_factory() as uow:
        for name in REPOSITORIES:
            getattr(uow, name)
        assert _checked_out(app_db) == 0
        assert await uow.users.count() == 0
        assert _checked_out(app_db) == 1
    assert _checked_out(app_db) == 0


async def test_a_unit_of_work_that_touches_nothing_creates_no_session(
    app_db: Database[AppUnitOfWork],
) -> None:
    async with app_db.uow_factory() as uow:
        pass
    assert not uow.used_database


async def test_repositories_are_refused_outside_the_block(app_db: Database[AppUnitOfWork]) -> None:
    uow = app_db.uow_factory()
    with pytest.raises(UnitOfWorkStateError, match="not entered"):
        _ = uow.users
    async with uow:
        users = uow.users
    with pytest.raises(UnitOfWorkStateError, match="closed"):
        _ = uow.users
    assert users is not None
