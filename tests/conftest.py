"""Shared fixtures: a PostgreSQL server (required in CI) and per-test databases.

Plain helpers live in ``tests/support`` and are imported from there, never from this file.

``db_settings`` is parametrized over SQLite and PostgreSQL, so a test that takes it runs
on both. Every PostgreSQL test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from db_manager import DatabaseSettings
from tests.support.ports import silent_listener
from tests.support.postgres import (
    PG_ADMIN_DB,
    PG_HOST,
    PG_PORT,
    PG_USER,
    admin_execute,
    pg_settings,
    sqlite_settings,
)

# The project uses its own pytest plugin, as an app would (one line).
pytest_plugins = ["db_manager.testing"]


def _pg_reachable() -> str | None:
    async def probe() -> None:
        conn = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB, timeout=3
        )
        await conn.close()

    def run_probe() -> None:
        asyncio.run(probe())

    # In a thread of its own: the first test to need PostgreSQL may ask for this from inside
    # an async fixture, where asyncio.run() cannot be called on the running loop's thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(run_probe).result()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_available() -> None:
    """Skip (outside CI) or fail (in CI) when PostgreSQL cannot be reached."""
    problem = _pg_reachable()
    if problem is None:
        return
    message = f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable ({problem})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; PostgreSQL tests are required in CI", pytrace=False)
    print(f"\nSKIPPING PostgreSQL tests: {message}")
    pytest.skip(message)


@pytest.fixture
async def pg_database(pg_available: None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test; dropped (connections terminated) afterwards."""
    name = f"dbm_test_{uuid.uuid4().hex[:12]}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[DatabaseSettings]:
    """Settings for a fresh, empty database on the parametrized backend."""
    if backend == "sqlite":
        yield sqlite_settings(tmp_path / "test.sqlite3")
        return
    name: str = await _new_pg_database(request)
    try:
        yield pg_settings(name)
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _new_pg_database(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue("pg_available")
    name = f"dbm_test_{uuid.uuid4().hex[:12]}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (see ``silent_listener``)."""
    with silent_listener() as port:
        yield port


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Tests never read the developer's ./config.toml or DATABASE__* variables."""
    for name in list(os.environ):
        if name.upper().startswith(("DATABASE__", "BOT__", "APP__")) or name == "CONFIG_FILE":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
