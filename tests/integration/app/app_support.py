"""Fixtures for the app's service tests: a started Database with the app's tables."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.models import User
from app.services import register_user
from app.story import Story, load_story
from app.unit_of_work import AppUnitOfWork
from db_manager import Database, DatabaseSettings, UnitOfWorkFactory


@pytest.fixture
async def app_db(db_settings: DatabaseSettings) -> AsyncIterator[Database[AppUnitOfWork]]:
    """A started Database on the parametrized backend, the app's tables created."""
    db = Database(db_settings, uow_class=AppUnitOfWork)
    await db.start()
    try:
        await db.create_all()
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def uow_factory(app_db: Database[AppUnitOfWork]) -> UnitOfWorkFactory[AppUnitOfWork]:
    return app_db.uow_factory


@pytest.fixture(scope="session")
def story() -> Story:
    return load_story()


async def make_user(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    telegram_id: int,
    story: Story | None = None,
    username: str | None = None,
) -> User:
    """Register a user in a unit of work of its own (committed) and return it."""
    async with uow_factory() as uow:
        user, _ = await register_user(
            uow, telegram_id, username or f"user{telegram_id}", "First", "Last", "en", story=story
        )
    return user
