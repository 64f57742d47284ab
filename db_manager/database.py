"""Database: the engine, the session factory and the uow_factory of one process.

``DatabaseInterface`` is the small abstract interface (``get_session``, ``create_all``,
``drop_all``); :class:`Database` is its SQLAlchemy implementation with an explicit life
cycle (``start()`` ... ``dispose()``). Nothing connects at import or at construction.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar, overload

import structlog
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db_manager.base import Base
from db_manager.config import DatabaseSettings
from db_manager.engine import SQLITE_BEGIN_OPTION, ConnectionBudget, create_engine
from db_manager.errors import (
    DatabaseNotStarted,
    DatabaseUnavailable,
    SchemaError,
    as_unavailable,
    is_connection_error,
    summarize,
)
from db_manager.reader import Reader
from db_manager.replicas import ReplicaSet
from db_manager.uow import UnitOfWork, UnitOfWorkFactory, make_session_factory

__all__ = ["Database", "DatabaseInterface"]

log = structlog.get_logger("db_manager.database")

U = TypeVar("U", bound=UnitOfWork)


class DatabaseInterface(ABC):
    """What the rest of an application needs from a database."""

    @abstractmethod
    def get_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session that is rolled back on error and always closed."""

    @abstractmethod
    async def create_all(self) -> None:
        """Create the tables that do not exist yet."""

    @abstractmethod
    async def drop_all(self) -> None:
        """Drop every table of the metadata."""


class Database(DatabaseInterface, Generic[U]):
    """The SQLAlchemy implementation: one engine, one session factory, one uow_factory."""

    @overload
    def __init__(
        self: Database[UnitOfWork],
        settings: DatabaseSettings,
        *,
        metadata: MetaData | None = None,
        engine: AsyncEngine | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        uow_class: type[U],
        metadata: MetaData | None = None,
        engine: AsyncEngine | None = None,
    ) -> None: ...

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        uow_class: type[Any] = UnitOfWork,
        metadata: MetaData | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings
        self.metadata = metadata if metadata is not None else Base.metadata
        self._uow_class: type[U] = uow_class
        self._engine = engine
        self._owns_engine = engine is None
        self._session_factory: async_sessionmaker[AsyncSession] | None = None
        self._uow_factory: UnitOfWorkFactory[U] | None = None
        self._reader: Reader | None = None
        self._replicas: ReplicaSet | None = None

    def __repr__(self) -> str:
        state = "started" if self._uow_factory is not None else "stopped"
        return f"<Database {self.settings.redacted_url} {state}>"

    # -- life cycle ---------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._uow_factory is not None

    async def start(self, *, wait: bool = True) -> None:
        """Build the engine and factories; with ``wait``, retry a ``SELECT 1`` for up to
        ``connect_timeout`` and raise ``DatabaseUnavailable`` with one clear line if it fails."""
        if self._engine is None:
            self._engine = create_engine(self.settings)
        self._session_factory = make_session_factory(self._engine)
        self._uow_factory = UnitOfWorkFactory(self._session_factory, self._uow_class)
        budget = ConnectionBudget.of(self.settings)
        log.info("database starting", **self.settings.describe())
        log.info(
            "connection budget",
            max_connections=budget.total,
            main_pool=budget.main,
            read_pool=budget.read,
            replica_pools=budget.replicas,
        )
        if wait:
            try:
                await self._wait_until_reachable()
            except BaseException:
                await self.dispose()
                raise
        await self._start_replicas()

    async def dispose(self) -> None:
        """Close every pooled connection. The Database can be started again afterwards."""
        engine, self._uow_factory, self._session_factory = self._engine, None, None
        replicas, self._replicas = self._replicas, None
        if replicas is not None:
            await replicas.stop()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.dispose()
        if engine is not None and self._owns_engine:
            self._engine = None
            await engine.dispose()
            log.info("database disposed", url=self.settings.redacted_url)

    async def _start_replicas(self) -> None:
        # Nothing is built or run without replicas in the settings (db_manager.replicas).
        try:
            replicas = ReplicaSet.from_settings(self.settings)
        except BaseException:
            await self.dispose()
            raise
        if replicas is not None:
            stale, self._replicas, self._reader = self._reader, replicas, None
            if stale is not None:  # built before the replicas were known (by a ping?)
                await stale.dispose()
            await replicas.start(self.reader.engine)

    @property
    def replicas(self) -> ReplicaSet | None:
        """The replicas of the read path and their state; None when none are configured."""
        return self._replicas

    async def _wait_until_reachable(self) -> None:
        deadline = time.monotonic() + self.settings.connect_timeout
        delay = 0.1
        while True:
            try:
                await self.ping(within=max(0.1, deadline - time.monotonic()))
                return
            except DatabaseUnavailable as exc:
                if time.monotonic() + delay >= deadline:
                    url = self.settings.sqlalchemy_url
                    where = (
                        f"{url.host}:{url.port}/{url.database or url.username or ''}"
                        if url.host
                        else str(url.database)
                    )
                    raise DatabaseUnavailable(
                        f"cannot reach the database at {where} after "
                        f"{self.settings.connect_timeout:g}s: {exc}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- accessors ------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None or self._uow_factory is None:
            raise DatabaseNotStarted("the database is not started; call `await database.start()`")
        return self._engine

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        if self._session_factory is None:
            raise DatabaseNotStarted("the database is not started; call `await database.start()`")
        return self._session_factory

    @property
    def uow_factory(self) -> UnitOfWorkFactory[U]:
        """The one factory of this process; the same object every time it is asked for."""
        if self._uow_factory is None:
            raise DatabaseNotStarted("the database is not started; call `await database.start()`")
        return self._uow_factory

    @property
    def reader(self) -> Reader:
        """The read path (see :mod:`db_manager.reader`): one per process, its engine built on
        first use with the same settings, disposed with the Database."""
        reader = self._reader
        if reader is None:
            reader = self._reader = Reader.from_settings(
                self.settings, main_engine=self.engine, replicas=self._replicas
            )
        return reader

    # -- DatabaseInterface ------------------------------------------------------------------

    @asynccontextmanager
    async def get_session(self) -> AsyncIterator[AsyncSession]:
        async with self.session_factory() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def create_all(self) -> None:
        """Create the missing tables in one transaction; safe when several processes start at
        once: on PostgreSQL they take turns on an advisory lock, so each later one finds the
        tables made (two concurrent CREATE TABLE of one name collide in ``pg_type``).

        Raises ``SchemaError`` (one line) or ``DatabaseUnavailable``.
        """
        try:
            async with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Transaction-scoped: released by the COMMIT that makes the tables
                    # visible, also behind PgBouncer's transaction pooling. Per database.
                    await conn.execute(_CREATE_ALL_LOCK)
                await conn.run_sync(self.metadata.create_all, checkfirst=True)
        except Exception as exc:
            if is_connection_error(exc):
                raise as_unavailable(exc) from exc
            raise SchemaError(f"creating tables failed: {summarize(exc, with_type=True)}") from exc
        log.info("tables created", tables=sorted(self.metadata.tables))

    async def drop_all(self) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(self.metadata.drop_all, checkfirst=True)
        except Exception as exc:
            if is_connection_error(exc):
                raise as_unavailable(exc) from exc
            raise SchemaError(f"dropping tables failed: {summarize(exc, with_type=True)}") from exc
        log.info("tables dropped", tables=sorted(self.metadata.tables))

    async def ping(self, within: float = 2.0) -> float:
        """Run ``SELECT 1`` within ``within`` seconds; return the latency in milliseconds.

        Raises ``DatabaseUnavailable`` when the server is gone, the pool is exhausted or the
        time runs out; never hangs longer than ``within`` seconds.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(within):
                async with self.engine.connect() as conn:
                    # A read: on SQLite it must not wait for another connection's write lock.
                    await conn.execution_options(**_READ_ONLY_BEGIN)
                    await conn.execute(_SELECT_1)
        except TimeoutError:
            raise DatabaseUnavailable(f"SELECT 1 did not answer within {within:.3g}s") from None
        except Exception as exc:
            if is_connection_error(exc):
                raise as_unavailable(exc) from exc
            raise
        return (time.perf_counter() - started) * 1000


_SELECT_1 = text("SELECT 1")
# pg_advisory_xact_lock's key for create_all: a fixed 64-bit number (the first 8 bytes of
# sha256("db_manager.create_all"), signed), so every process and version agrees on it.
_CREATE_ALL_LOCK = text("SELECT pg_advisory_xact_lock(721373139434314742)")
_READ_ONLY_BEGIN = {SQLITE_BEGIN_OPTION: "DEFERRED"}
