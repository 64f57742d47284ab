"""Build the one :class:`~sqlalchemy.ext.asyncio.AsyncEngine` of a process from settings.

Dialect tuning lives here and nowhere else:

* SQLite (aiosqlite): foreign keys on, WAL and a busy timeout for files, a static pool for
  ``:memory:``, and real transactions (pysqlite's implicit BEGIN is switched off and we emit
  ``BEGIN IMMEDIATE`` ourselves, so a read-then-write never fails with "database is locked"
  but waits up to ``sqlite_busy_timeout``).
* asyncpg: a connect timeout (asyncpg's own is 60 s), an optional ``command_timeout``,
  server-side ``statement_timeout`` / ``idle_in_transaction_session_timeout`` (a cancelled
  client does not reliably stop a query on the server; these do),
  ``client_connection_check_interval`` (a query whose connection was force-closed stops),
  and the PgBouncer switch.

Parameters are hidden from logs and exception messages unless ``hide_parameters = false``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, StaticPool

from db_manager.config import DatabaseSettings

__all__ = ["SQLITE_BEGIN_OPTION", "asyncpg_connect_args", "create_engine"]

# Execution option: ``conn.execution_options(db_manager_sqlite_begin="DEFERRED")`` makes an
# SQLite transaction that only reads start without taking the write lock.
SQLITE_BEGIN_OPTION = "db_manager_sqlite_begin"


def create_engine(settings: DatabaseSettings, **engine_kwargs: Any) -> AsyncEngine:
    """Create the engine described by ``settings``; ``engine_kwargs`` override anything."""
    url = settings.sqlalchemy_url
    kwargs: dict[str, Any] = {
        "echo": settings.echo,
        "hide_parameters": settings.hide_parameters,
        "pool_pre_ping": settings.pool_pre_ping,
    }
    if url.get_backend_name() == "sqlite":
        memory = url.database in (None, "", ":memory:")
        if memory:
            kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(
                pool_size=settings.pool_size,
                max_overflow=settings.max_overflow,
                pool_timeout=settings.pool_timeout,
                pool_recycle=settings.pool_recycle,
            )
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout}
        kwargs.update(engine_kwargs)
        engine = create_async_engine(url, **_fit_pool_arguments(kwargs))
        _tune_sqlite(engine, settings, memory=memory)
        return engine

    connect_args = asyncpg_connect_args(settings)
    kwargs.update(
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        connect_args=connect_args,
    )
    kwargs.update(engine_kwargs)
    return create_async_engine(url, **_fit_pool_arguments(kwargs))


def asyncpg_connect_args(
    settings: DatabaseSettings, *, server_settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """asyncpg's connect arguments for ``settings``; ``server_settings`` add startup
    parameters (ignored behind PgBouncer, which refuses them)."""
    connect_args: dict[str, Any] = {"timeout": settings.connect_timeout}
    if settings.command_timeout is not None:
        connect_args["command_timeout"] = settings.command_timeout
    if settings.pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection:
        # no statement cache in asyncpg or in the dialect, and unique statement names so two
        # clients never collide on "__asyncpg_stmt_1__". PgBouncer also rejects unknown
        # startup parameters, so the server-side timeouts belong on the role
        # (ALTER ROLE ... SET statement_timeout = ...).
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    else:
        startup = {"application_name": settings.application_name, **(server_settings or {})}
        if settings.statement_timeout is not None:
            startup["statement_timeout"] = str(int(settings.statement_timeout * 1000))
        if settings.idle_in_transaction_timeout is not None:
            startup["idle_in_transaction_session_timeout"] = str(
                int(settings.idle_in_transaction_timeout * 1000)
            )
        if settings.client_connection_check_interval > 0:
            # asyncpg's cancel request is lost when the connection is force-closed (anyio
            # re-cancels SQLAlchemy's graceful close); this makes the server notice instead.
            startup["client_connection_check_interval"] = str(
                max(1, int(settings.client_connection_check_interval * 1000))
            )
        connect_args["server_settings"] = startup
    return connect_args


def _fit_pool_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop queue-pool sizing when the caller chose a pool without a queue (NullPool, ...)."""
    poolclass = kwargs.get("poolclass")
    if poolclass is not None and poolclass in (NullPool, StaticPool):
        for key in ("pool_size", "max_overflow", "pool_timeout"):
            kwargs.pop(key, None)
    return kwargs


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _tune_sqlite(engine: AsyncEngine, settings: DatabaseSettings, *, memory: bool) -> None:
    busy_ms = int(settings.sqlite_busy_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Turn off pysqlite's own transaction handling; the "begin" hook below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: concurrent writers queue on busy_timeout
        # instead of failing with SQLITE_BUSY when a read transaction upgrades to a write.
        # A connection that only reads may ask for a deferred BEGIN (see SQLITE_BEGIN_OPTION).
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")
