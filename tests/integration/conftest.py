"""The outbox tests' fixtures (``test_outbox*.py``): a fake Bot API server and a started
PostgreSQL database with every table (see ``outbox_helpers.py`` for the rest they share)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from db_manager import Database, UnitOfWork
from tests.integration.outbox_helpers import started_database
from tests.support.fake_bot_api import FakeBotApi
from tests.support.postgres import pg_settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


@pytest.fixture
async def pg_db(pg_database: str) -> AsyncIterator[Database[UnitOfWork]]:
    async with started_database(pg_settings(pg_database)) as database:
        yield database
