"""Fixtures of the app's service tests: a started Database with the app's tables.

Not a ``conftest.py`` on purpose: conftest files outside packages all import as the module
``conftest`` and one here would shadow ``tests/conftest.py`` for the modules that do
``from conftest import ...``. Test modules import the fixtures they use from here (``<name>_fixture``,
registered under ``<name>``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.models import User
from app.services import register_user
from app.story import Story, load_story
from app.unit_of_work import AppUnitOfWork
from db_manager import Database, DatabaseSettings, UnitOfWorkFactory


@pytest.fixture(name="app_db")
async def app_db_fixture(db_settings: DatabaseSettings) -> AsyncIterator[Database[AppUnitOfWork]]:
    """A started Database on the parametrized backend, the app's tables created."""
    db = Database(db_settings, uow_class=AppUnitOfWork)
    await db.start()
    try:
        await db.create_all()
        yield db
    finally:
        await db.dispose()


@pytest.fixture(name="uow_factory")
def uow_factory_fixture(app_db: Database[AppUnitOfWork]) -> UnitOfWorkFactory[AppUnitOfWork]:
    return app_db.uow_factory


@pytest.fixture(name="story", scope="session")
def story_fixture() -> Story:
    return load_story()


@pytest.fixture(name="make_user")
def make_user_fixture(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> Callable[[int], Awaitable[User]]:
    """``await make_user(telegram_id)``: register a user in a unit of work of its own."""

    async def make(telegram_id: int) -> User:
        async with uow_factory() as uow:
            user, _ = await register_user(
                uow, telegram_id, f"user{telegram_id}", "First", "Last", "en", story=story
            )
        return user

    return make
