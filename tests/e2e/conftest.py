"""Fixtures of the end-to-end tests: the app deployed on the parametrized backend, the story."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.story import Story, load_story
from db_manager import DatabaseSettings

from .e2e_support import Deployment, deployed


@pytest.fixture
async def deployment(db_settings: DatabaseSettings) -> AsyncIterator[Deployment]:
    """The app on the parametrized backend (SQLite and PostgreSQL), bot and API on."""
    async with deployed(db_settings) as running:
        yield running


@pytest.fixture(scope="session")
def story() -> Story:
    return load_story()
