"""The shared PostgreSQL server as the tests see it: where it is, settings for it, admin SQL.

The server is given by ``TEST_PG_HOST`` / ``TEST_PG_PORT`` / ``TEST_PG_USER`` /
``TEST_PG_DATABASE`` (defaults: ``127.0.0.1:5432``, user ``postgres``, database ``test``,
trust authentication). Admin statements run on a connection of their own (asyncpg, no pool),
so they never borrow one of the app's connections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg

from db_manager import DatabaseSettings

__all__ = [
    "PG_ADMIN_DB",
    "PG_HOST",
    "PG_PORT",
    "PG_USER",
    "admin_execute",
    "pg_backends",
    "pg_connect",
    "pg_fetch",
    "pg_settings",
    "sqlite_settings",
]

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("TEST_PG_DATABASE", "test")


def pg_settings(database: str, **overrides: Any) -> DatabaseSettings:
    """Settings for ``database`` on the shared server (tables created at start)."""
    values: dict[str, Any] = {
        "driver": "postgresql+asyncpg",
        "host": PG_HOST,
        "port": PG_PORT,
        "user": PG_USER,
        "database": database,
        "connect_timeout": 3.0,
        "create_tables": True,
    }
    values.update(overrides)
    return DatabaseSettings(**values)


def sqlite_settings(path: Path, **overrides: Any) -> DatabaseSettings:
    """Settings for a SQLite file at ``path``."""
    values: dict[str, Any] = {"driver": "sqlite+aiosqlite", "database": str(path)}
    values.update(overrides)
    return DatabaseSettings(**values)


async def pg_connect(
    *, host: str = PG_HOST, port: int = PG_PORT, database: str = PG_ADMIN_DB
) -> asyncpg.Connection:
    """A plain asyncpg connection as the admin user (close it yourself)."""
    return await asyncpg.connect(host=host, port=port, user=PG_USER, database=database, timeout=5)


async def admin_execute(*statements: str, database: str = PG_ADMIN_DB) -> None:
    """Run ``statements`` in order on one admin connection to ``database``."""
    conn = await pg_connect(database=database)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def pg_fetch(
    query: str, *args: Any, host: str = PG_HOST, port: int = PG_PORT, database: str = PG_ADMIN_DB
) -> list[asyncpg.Record]:
    """The rows of ``query`` on an admin connection of its own."""
    conn = await pg_connect(host=host, port=port, database=database)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def pg_backends(database: str) -> list[asyncpg.Record]:
    """The server backends connected to ``database`` (pid, state, times, query), seen from
    the admin database (so the observer's own backend is never among them)."""
    return await pg_fetch(
        "SELECT pid, state, backend_start, state_change, xact_start, query "
        "FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY pid",
        database,
    )
