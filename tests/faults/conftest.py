"""Fixtures of the fault suite: databases, servers started by the test, the app in a subprocess.

PostgreSQL is required in CI: every fixture here depends on ``pg_available`` (from
``tests/conftest.py``), which fails in CI and skips elsewhere when the server is missing; the
same rule applies to the PostgreSQL binaries (own server) and to PgBouncer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from db_manager import DatabaseSettings
from tests.support.postgres import pg_connect

from .faultapp import prepare_database
from .helpers import PgBouncer, PostgresServer, UvicornProcess, faults_settings


def require(problem: str | None) -> None:
    """Fail in CI, skip elsewhere, when something the test needs is missing."""
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; the fault suite is required in CI", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
async def faults_db(pg_database: str) -> str:
    """A fresh database on the shared server, with the fault app's tables, seeded."""
    await prepare_database(faults_settings(pg_database), seed_keys=20)
    return pg_database


@pytest.fixture
def own_postgres(pg_available: None) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test's own, which the test may stop and start."""
    require(PostgresServer.available())
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def own_postgres_db(own_postgres: PostgresServer) -> str:
    """A database with the fault app's tables on :func:`own_postgres`."""
    name = f"faults_{uuid.uuid4().hex[:8]}"
    conn = await pg_connect(port=own_postgres.port, database="postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await prepare_database(faults_settings(name, port=own_postgres.port))
    return name


@pytest.fixture
def pgbouncer(pg_available: None) -> Iterator[PgBouncer]:
    """A real PgBouncer, transaction pooling, 2 server connections, in front of the server."""
    require(None if PgBouncer.executable() else "pgbouncer is not installed")
    bouncer = PgBouncer(pool_mode="transaction", pool_size=2)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def uvicorn_app() -> Iterator[Callable[..., UvicornProcess]]:
    """``start(settings, workers=2, telegram=True)``: the fault app under real uvicorn."""
    started: list[UvicornProcess] = []

    def start(settings: DatabaseSettings, *, workers: int = 1, **options: object) -> UvicornProcess:
        server = UvicornProcess(settings, workers=workers, **options)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.cleanup()
