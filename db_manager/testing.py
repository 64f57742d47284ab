"""A pytest plugin: every test runs inside one transaction that is rolled back at its end.

Enable it with one line in ``conftest.py``::

    pytest_plugins = ["db_manager.testing"]

Fixtures:

* ``dbm_settings`` - the test database: ``$DB_MANAGER_TEST_DATABASE_URL`` (for example
  ``postgresql+asyncpg://postgres@127.0.0.1/test``) or else a temporary SQLite file.
* ``dbm_metadata`` - the tables to create once per run (default ``db_manager.Base.metadata``).
* ``dbm_engine`` - an engine on that database, tables created.
* ``dbm_connection`` - one connection with an outer transaction, rolled back after the test.
* ``dbm_session_factory`` / ``dbm_uow_factory`` - sessions joined to that transaction with
  ``join_transaction_mode="create_savepoint"``: code under test may ``commit()`` (a
  savepoint is released) and the test still leaves nothing behind.
* ``dbm_client`` - an ``httpx.AsyncClient`` for the FastAPI app of your ``dbm_app`` fixture,
  lifespan running, whose ``uow_factory`` (HTTP ``get_uow`` and the bot middleware alike)
  and whose read path (``ReaderDep``, :meth:`Reader.override`) are bound to the test's
  transaction.

Concurrency: all units of work share the test's one connection, so ``dbm_client`` runs
requests one at a time (concurrent requests in a test are queued, not interleaved); a
test that needs true concurrency should use a real database without this plugin.
"""

from __future__ import annotations

from db_manager._extras import require

require("db_manager.testing", "testing", "pytest", "pytest_asyncio", "httpx")

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from db_manager.base import Base
from db_manager.config import DatabaseSettings
from db_manager.engine import create_engine
from db_manager.uow import UnitOfWork, UnitOfWorkFactory, make_session_factory

if TYPE_CHECKING:  # starlette comes with the app under test, not with this extra
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "DATABASE_URL_ENV",
    "dbm_app",
    "dbm_client",
    "dbm_connection",
    "dbm_created_tables",
    "dbm_engine",
    "dbm_metadata",
    "dbm_session_factory",
    "dbm_settings",
    "dbm_uow_factory",
]

DATABASE_URL_ENV = "DB_MANAGER_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def dbm_created_tables() -> set[tuple[str, int]]:
    """The (database, metadata) pairs whose tables this run already created."""
    return set()


@pytest.fixture(scope="session")
def dbm_settings(tmp_path_factory: pytest.TempPathFactory) -> DatabaseSettings:
    """The test database: ``$DB_MANAGER_TEST_DATABASE_URL`` or a temporary SQLite file."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return DatabaseSettings(url=url)
    path: Path = tmp_path_factory.mktemp("db_manager") / "test.sqlite3"
    return DatabaseSettings(database=str(path))


@pytest.fixture(scope="session")
def dbm_metadata() -> MetaData:
    """The tables to create once per run (override it for your own metadata)."""
    return Base.metadata


@pytest_asyncio.fixture
async def dbm_engine(
    dbm_settings: DatabaseSettings,
    dbm_metadata: MetaData,
    dbm_created_tables: set[tuple[str, int]],
) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database, its tables created on first use."""
    engine = create_engine(dbm_settings)
    key = (dbm_settings.redacted_url, id(dbm_metadata))
    try:
        if key not in dbm_created_tables:
            async with engine.begin() as conn:
                await conn.run_sync(dbm_metadata.create_all, checkfirst=True)
            dbm_created_tables.add(key)
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def dbm_connection(dbm_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection with an outer transaction, rolled back after the test."""
    async with dbm_engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def dbm_session_factory(dbm_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions joined to the test's transaction; their commits release savepoints."""
    return make_session_factory(dbm_connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def dbm_uow_factory(
    dbm_session_factory: async_sessionmaker[AsyncSession],
) -> UnitOfWorkFactory[UnitOfWork]:
    """Units of work on the test's transaction."""
    return UnitOfWorkFactory(dbm_session_factory, UnitOfWork)


@pytest.fixture
def dbm_app() -> Any:
    """Your FastAPI app under test: override this fixture."""
    raise pytest.UsageError(
        "dbm_client needs a `dbm_app` fixture returning your FastAPI app "
        "(built with settings pointing at dbm_settings)"
    )


class _OneAtATime:
    """Run one request at a time: the test's single connection cannot interleave them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.lock:
            await self.app(scope, receive, send)


@pytest_asyncio.fixture
async def dbm_client(
    dbm_app: Any, dbm_session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for ``dbm_app``, lifespan running, bound to the test's transaction."""
    async with dbm_app.router.lifespan_context(dbm_app):
        factory: UnitOfWorkFactory[Any] = dbm_app.state.uow_factory
        database = getattr(dbm_app.state, "database", None)
        # The read path too: handlers on ReaderDep see the test's rows, as UowDep ones do.
        reading = database.reader.override(dbm_session_factory) if database else nullcontext()
        with factory.override(dbm_session_factory), reading:
            transport = httpx.ASGITransport(app=_OneAtATime(dbm_app))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
