"""The connection budget logged at start is what the pools really allow: a test holds that
many connections on the server and sees the next checkout of each pool wait."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from db_manager import ConnectionBudget, Database, DatabaseSettings

pytestmark = pytest.mark.postgres

APPLICATION = "dbm_budget_test"


async def server_connections(database: str) -> int:
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            database,
            APPLICATION,
        )
    finally:
        await conn.close()
    return count


async def hold(stack: AsyncExitStack, engine: AsyncEngine, count: int) -> list[AsyncConnection]:
    held = []
    for _ in range(count):
        conn = await stack.enter_async_context(engine.connect())
        await conn.exec_driver_sql("SELECT 1")
        held.append(conn)
    return held


async def test_logged_budget_is_the_number_of_connections_a_process_can_open(
    pg_database: str,
) -> None:
    settings = DatabaseSettings(
        driver="postgresql+asyncpg",
        host="127.0.0.1",
        user="postgres",
        database=pg_database,
        pool_size=2,
        max_overflow=1,
        read_pool_size=1,
        read_max_overflow=1,
        pool_timeout=0.3,
        application_name=APPLICATION,
    )
    database = Database(settings)
    with capture_logs() as logs:
        await database.start()
    try:
        (budget_line,) = [line for line in logs if line["event"] == "connection budget"]
        assert budget_line["max_connections"] == 5
        assert (budget_line["main_pool"], budget_line["read_pool"]) == (3, 2)
        assert ConnectionBudget.of(settings).total == 5

        async with AsyncExitStack() as stack:
            await hold(stack, database.engine, 3)
            with pytest.raises(sqlalchemy.exc.TimeoutError):
                await hold(stack, database.engine, 1)
            await hold(stack, database.reader.engine, 2)
            with pytest.raises(sqlalchemy.exc.TimeoutError):
                await hold(stack, database.reader.engine, 1)
            assert await server_connections(pg_database) == budget_line["max_connections"]
        # Given back: the next checkout of either pool does not wait.
        async with asyncio.timeout(1):
            async with database.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
    finally:
        await database.dispose()


def test_an_in_memory_sqlite_database_has_one_connection() -> None:
    budget = ConnectionBudget.of(DatabaseSettings(database=":memory:"))
    assert (budget.main, budget.read, budget.total) == (1, 0, 1)


def test_the_read_pool_is_sized_by_its_own_settings() -> None:
    budget = ConnectionBudget.of(
        DatabaseSettings(pool_size=4, max_overflow=6, read_pool_size=1, read_max_overflow=0)
    )
    assert (budget.main, budget.read, budget.total) == (10, 1, 11)
