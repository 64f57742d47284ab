"""Build a process's engines from settings: the main one and the read path's, in one place.

Dialect tuning lives here and nowhere else:

* SQLite (aiosqlite): foreign keys on, WAL and a busy timeout for files, a static pool for
  ``:memory:``, no pre-ping unless ``pool_pre_ping`` is set explicitly (a connection to a
  local file does not go stale, and a ping costs four thread hops per checkout), and
  transactions that take the write lock with their first write, never for a read
  (:mod:`db_manager._sqlite`), so a read-then-write never fails with "database is locked"
  but waits up to ``sqlite_busy_timeout``.
* asyncpg: a connect timeout (asyncpg's own is 60 s), an optional ``command_timeout``,
  server-side ``statement_timeout`` / ``idle_in_transaction_session_timeout`` (a cancelled
  client does not reliably stop a query on the server; these do),
  ``client_connection_check_interval`` (a query whose connection was force-closed stops),
  and the PgBouncer switch.

Parameters are hidden from logs and exception messages unless ``hide_parameters = false``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from db_manager._extras import require
from db_manager._sqlite import SQLITE_BEGIN_OPTION, make_sqlite_read_only, tune_sqlite
from db_manager.config import DatabaseSettings

__all__ = [
    "SQLITE_BEGIN_OPTION",
    "ConnectionBudget",
    "asyncpg_connect_args",
    "create_engine",
    "create_read_engine",
    "create_replica_engine",
    "is_memory",
]


def create_engine(settings: DatabaseSettings, **engine_kwargs: Any) -> AsyncEngine:
    """Create the engine described by ``settings``; ``engine_kwargs`` override anything."""
    url = settings.sqlalchemy_url
    kwargs: dict[str, Any] = {
        "echo": settings.echo,
        "hide_parameters": settings.hide_parameters,
        "pool_pre_ping": settings.pool_pre_ping,
    }
    if url.get_backend_name() == "sqlite":
        memory = is_memory(settings)
        if memory:
            kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(_pool_arguments(settings, settings.pool_size, settings.max_overflow))
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout}
        kwargs["pool_pre_ping"] = (
            settings.pool_pre_ping and "pool_pre_ping" in settings.model_fields_set
        )
        kwargs["pool_reset_on_return"] = None  # rolled back only if open (db_manager._sqlite)
        kwargs.update(engine_kwargs)
        engine = create_async_engine(url, **_fit_pool_arguments(kwargs))
        tune_sqlite(engine, settings, memory=memory)
        return engine

    require("PostgreSQL (postgresql+asyncpg)", "postgres", "asyncpg")
    kwargs.update(_pool_arguments(settings, settings.pool_size, settings.max_overflow))
    kwargs["connect_args"] = asyncpg_connect_args(settings)
    kwargs.update(engine_kwargs)
    return create_async_engine(url, **_fit_pool_arguments(kwargs))


def create_read_engine(settings: DatabaseSettings, **engine_kwargs: Any) -> AsyncEngine:
    """The dedicated read engine: autocommit, read-only sessions, no pre-ping, no BEGIN hook.

    Its pool is sized by ``read_pool_size`` / ``read_max_overflow`` (small by default: each
    read holds its connection for one statement only); timeouts and ``echo`` come from
    ``settings`` as for the main engine; ``engine_kwargs`` override anything. An in-memory
    SQLite database cannot have a second engine: use :meth:`Reader.from_settings`, which
    falls back to the main engine.
    """
    url = settings.sqlalchemy_url
    kwargs: dict[str, Any] = {
        "echo": settings.echo,
        "hide_parameters": settings.hide_parameters,
        "isolation_level": "AUTOCOMMIT",
        # No pre-ping: it would double the round trips of a one-statement read. A dead
        # pooled connection is retried once instead (reads are idempotent).
        "pool_pre_ping": False,
        **_pool_arguments(settings, settings.read_pool_size, settings.read_max_overflow),
    }
    if url.get_backend_name() == "sqlite":
        if is_memory(settings):
            raise ValueError(
                "an in-memory SQLite database has no second engine; share the main one"
            )
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout}
        kwargs.update(engine_kwargs)
        engine = create_async_engine(url, **_fit_pool_arguments(kwargs))
        make_sqlite_read_only(engine, settings)
        return engine

    require("PostgreSQL (postgresql+asyncpg)", "postgres", "asyncpg")
    connect_args = asyncpg_connect_args(
        settings, server_settings={"default_transaction_read_only": "on"}
    )
    if settings.pgbouncer:
        # PgBouncer refuses startup parameters, so default_transaction_read_only cannot be
        # set: writes are refused client-side. And no autocommit behind its transaction
        # pooling: asyncpg prepares a statement and then executes it, each step ending in
        # Sync, and outside a transaction PgBouncer may send the two steps to different
        # server connections ("prepared statement ... does not exist"). Each read runs in a
        # short transaction instead (rolled back at checkin), which keeps both steps on one
        # server connection (tests/faults).
        kwargs.pop("isolation_level")
    kwargs["connect_args"] = connect_args
    kwargs.update(engine_kwargs)
    return create_async_engine(url, **_fit_pool_arguments(kwargs))


def is_memory(settings: DatabaseSettings) -> bool:
    """True for an in-memory SQLite database (one connection, shared by every engine user)."""
    url = settings.sqlalchemy_url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """The most connections one process can open: main pool, read pool, replica pools.

    Per process ``(pool_size + max_overflow) + (read_pool_size + read_max_overflow)`` on the
    primary, plus ``replica_pool_size + replica_max_overflow`` on each replica; an
    in-memory SQLite database has exactly one. Multiply by workers per host and by replicas
    to size the server's ``max_connections`` (the README's formula).
    """

    main: int
    read: int
    # Per replica (replica_pool_size + replica_max_overflow), summed over the replicas.
    replicas: int = 0

    @property
    def total(self) -> int:
        return self.main + self.read + self.replicas

    @classmethod
    def of(cls, settings: DatabaseSettings) -> ConnectionBudget:
        if is_memory(settings):
            return cls(main=1, read=0)  # StaticPool: one connection, shared by the reader
        return cls(
            main=settings.pool_size + settings.max_overflow,
            read=settings.read_pool_size + settings.read_max_overflow,
            replicas=len(settings.replicas)
            * (settings.replica_pool_size + settings.replica_max_overflow),
        )


def _pool_arguments(settings: DatabaseSettings, size: int, overflow: int) -> dict[str, Any]:
    """The queue-pool arguments of an engine: written once for the main and read engines."""
    return {
        "pool_size": size,
        "max_overflow": overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
    }


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


def create_replica_engine(
    settings: DatabaseSettings, url: URL, **engine_kwargs: Any
) -> AsyncEngine:
    """A read engine on the streaming replica at ``url``: what :func:`create_read_engine`
    builds (autocommit, read-only sessions, no pre-ping), sized by ``replica_pool_size`` /
    ``replica_max_overflow``; every other setting (timeouts, PgBouncer) is the primary's."""
    replica = settings.model_copy(
        update={
            "url": SecretStr(url.render_as_string(hide_password=False)),
            "read_pool_size": settings.replica_pool_size,
            "read_max_overflow": settings.replica_max_overflow,
        }
    )
    return create_read_engine(replica, **engine_kwargs)
