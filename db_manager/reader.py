"""Reader: the read path, for handlers that only read.

::

    reader = Reader.from_settings(settings)          # or database.reader
    item = await reader.get(Item, 42)                 # detached ORM entity, or None
    rows = (await reader.execute(ITEMS_BY_OWNER, {"owner": 7})).all()
    async with reader.snapshot() as session:          # one consistent view
        total = await session.scalar(select(func.count()).select_from(Item))
        items = (await session.scalars(select(Item))).all()

Contract:

* **One statement, one snapshot, one round trip.** Each plain call runs its statement in
  autocommit mode on a dedicated read engine (``isolation_level="AUTOCOMMIT"``): no BEGIN,
  no COMMIT, and no event listener on PostgreSQL. (Behind PgBouncer, ``pgbouncer = true``,
  each statement runs in a short transaction instead: autocommit statements are not safe
  with its transaction pooling.) Statements built once (module constants
  with ``bindparam``) skip SQLAlchemy's statement building and hit its compiled cache.
* **The connection is held only while the statement runs.** Checkout, execute, fetch and
  checkin of one statement happen inside one ``greenlet_spawn`` call; the result comes back
  fully buffered and the pool's checked-out count is back where it was.
* **Writes are refused.** DML constructs (``insert()``, ``update()``, ``delete()``) are
  refused before any round trip; anything else that writes is refused by the database:
  PostgreSQL connections start with ``default_transaction_read_only=on``, SQLite ones with
  ``PRAGMA query_only=ON``. Both raise :class:`~db_manager.errors.ReadOnlyError`.
  Behind PgBouncer (``pgbouncer = true``) startup parameters are refused, so the refusal is
  client-side only (DML constructs); give the reading role
  ``ALTER ROLE ... SET default_transaction_read_only = on`` to have the server refuse too.
  An in-memory SQLite database lives in one connection, so its reader shares the main
  engine and refuses DML constructs only.
* **A consistent view on request.** :meth:`Reader.snapshot` holds one connection in a
  ``READ ONLY, REPEATABLE READ`` transaction (PostgreSQL) or a deferred read transaction
  (SQLite) for several statements, and yields an ``AsyncSession`` on it.
* **Connection failures are typed** (:class:`~db_manager.errors.DatabaseUnavailable`). There
  is no pre-ping (it would cost a round trip per statement): a statement that fails because
  its pooled connection had died (server restart, killed backend) is retried once on a fresh
  connection, which is safe because it only reads.

* **Replicas, when configured** (``[database] replicas``, :mod:`db_manager.replicas`): plain
  reads and snapshots go round robin to a usable streaming replica and fall back to this
  engine (the primary's read engine); a connection failure on a replica is retried on the
  next one. ``reader.at(position)`` reads at least a given commit. Routing reads only what a
  background refresh learned: no round trip is added to a read.

ORM entities come back detached: loaded columns are readable, lazy relationships are not
(load them with ``selectinload``/``joinedload`` options, which run inside the same call).

``sqlalchemy.util.greenlet_spawn`` is a less public SQLAlchemy API (the one
``AsyncConnection`` itself is built on); ``tests/integration/test_reader.py`` pins it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Select, bindparam, inspect, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Executable

# Less public API (pinned by a test): run sync SQLAlchemy code that awaits the async driver.
from sqlalchemy.util import greenlet_spawn

from db_manager.cancellation import run_to_completion
from db_manager.config import DatabaseSettings
from db_manager.engine import SQLITE_BEGIN_OPTION, create_read_engine, is_memory
from db_manager.errors import (
    DatabaseUnavailable,
    ReadOnlyError,
    as_unavailable,
    is_connection_error,
    summarize,
)

if TYPE_CHECKING:
    from db_manager.replicas import ReplicaSet

__all__ = ["Params", "Reader"]

Params = Mapping[str, Any]
_M = TypeVar("_M")
_T = TypeVar("_T")

_READ_ONLY_SQLSTATE: Final = "25006"  # read_only_sql_transaction
_SQLITE_READONLY: Final = 8  # primary result code of "attempt to write a readonly database"


class Reader:
    """Read-only access to one database; safe to share by every request of a process.

    It keeps no per-request state, so one instance serves all requests (it is what
    ``Database.reader`` returns and ``Depends(get_reader)`` hands out).
    """

    __slots__ = (
        "_engine",
        "_get_statements",
        "_min_position",
        "_override",
        "_owns_engine",
        "_replicas",
        "_sqlite",
        "_sync_engine",
    )

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        owns_engine: bool = False,
        replicas: ReplicaSet | None = None,
    ) -> None:
        """Read through ``engine``, normally one from :func:`create_read_engine`.

        With ``owns_engine``, :meth:`dispose` disposes it. With ``replicas``, reads go to a
        usable replica first (:mod:`db_manager.replicas`); ``engine`` serves when none is.
        """
        self._engine = engine
        self._sync_engine = engine.sync_engine
        self._owns_engine = owns_engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._get_statements: dict[type[Any], tuple[Select[Any], tuple[str, ...]]] = {}
        self._replicas = replicas
        self._min_position = 0
        self._override: async_sessionmaker[AsyncSession] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: DatabaseSettings,
        *,
        main_engine: AsyncEngine | None = None,
        replicas: ReplicaSet | None = None,
    ) -> Reader:
        """A reader with a read engine of its own; an in-memory SQLite database, which has
        only one connection, is read through ``main_engine`` instead."""
        if is_memory(settings):
            if main_engine is None:
                raise ValueError("an in-memory SQLite database is read through its main engine")
            # Same pool and connection; a deferred BEGIN, so reads never take the write lock.
            return cls(main_engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"}))
        return cls(create_read_engine(settings), owns_engine=True, replicas=replicas)

    def __repr__(self) -> str:
        return f"<Reader {self._engine.url.render_as_string(hide_password=True)}>"

    @property
    def engine(self) -> AsyncEngine:
        """The primary's read engine (replicas have their own, in :attr:`replicas`)."""
        return self._engine

    @property
    def replicas(self) -> ReplicaSet | None:
        return self._replicas

    def at(self, position: int | None) -> Reader:
        """This reader, for reads that must see every commit up to ``position`` (a commit
        position, see :meth:`ReplicaSet.track`): served by a replica known to have replayed
        it, else by the primary. None (or no replicas): this reader itself."""
        if not position or self._replicas is None:
            return self
        view = Reader.__new__(Reader)
        view._engine, view._sync_engine = self._engine, self._sync_engine
        view._owns_engine, view._sqlite = False, self._sqlite
        view._get_statements, view._replicas = self._get_statements, self._replicas
        view._min_position = position
        view._override = self._override
        return view

    @contextmanager
    def override(self, session_factory: async_sessionmaker[AsyncSession]) -> Iterator[None]:
        """Read through sessions of ``session_factory`` inside the ``with`` (for tests).

        ``db_manager.testing`` binds them to the test's connection, so reads see the test's
        uncommitted rows, as units of work do. Writes are then refused client-side only
        (DML constructs); the statement runs on the same code path, in the test's
        transaction.
        """
        previous, self._override = self._override, session_factory
        try:
            yield
        finally:
            self._override = previous

    async def dispose(self) -> None:
        """Close the read engine's pooled connections (if this reader owns the engine)."""
        if self._owns_engine:
            await self._engine.dispose()

    # -- one statement, one snapshot -----------------------------------------------------

    async def get(self, model: type[_M], pk: Any) -> _M | None:
        """The ``model`` row with primary key ``pk`` (a tuple for composite keys), detached;
        None if there is none. The SELECT is built once per mapped class."""
        entry = self._get_statements.get(model)
        if entry is None:
            entry = self._get_statements[model] = _build_get(model)
        statement, names = entry
        params = {names[0]: pk} if len(names) == 1 else dict(zip(names, pk, strict=True))
        result: _M | None = await self._run(_orm, statement, params, _one_entity)
        return result

    async def execute(self, statement: Executable, params: Params | None = None) -> Result[Any]:
        """Run ``statement`` and return its result, fully fetched (read it at leisure).

        ORM statements (``select(Item)``) give entities, as ``AsyncSession.execute`` would.
        Core results are the driver-buffered cursor result, as ``AsyncConnection.execute``
        returns it; ORM results and streaming requests are frozen (fetched) before return.
        """
        if statement._propagate_attrs.get("compile_state_plugin") == "orm" or _streams(statement):
            result: Result[Any] = await self._dispatch(statement, params, _buffered)
        else:
            result = await self._dispatch(statement, params, _as_is)
        return result

    async def scalar(self, statement: Executable, params: Params | None = None) -> Any:
        """The first column of the first row, or None."""
        return await self._dispatch(statement, params, _scalar)

    async def scalars(self, statement: Executable, params: Params | None = None) -> list[Any]:
        """The first column of every row, as a list."""
        result: list[Any] = await self._dispatch(statement, params, _scalars)
        return result

    async def ping(self, within: float = 2.0) -> float:
        """Check within ``within`` seconds that the database answers; return milliseconds.

        One round trip on a read-pool connection through the dialect's own liveness check
        (``do_ping``, what ``pool_pre_ping`` uses: an empty query on asyncpg, ``SELECT 1``
        elsewhere). Raises ``DatabaseUnavailable`` when the server is gone, the read pool is
        exhausted or the time runs out; never hangs longer than ``within`` seconds.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(within):
                await greenlet_spawn(self._ping)
        except TimeoutError:
            raise DatabaseUnavailable(f"the database did not answer within {within:.3g}s") from None
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise DatabaseUnavailable(
                f"the database is unavailable: {summarize(exc, with_type=True)}"
            ) from exc
        return (time.perf_counter() - started) * 1000

    def _ping(self) -> None:
        # Runs in the greenlet. A raw pool connection: no Connection, no statement compiling.
        conn = self._sync_engine.raw_connection()
        try:
            self._ping_on(conn)
            return
        except Exception:
            conn.invalidate()  # a dead pooled connection: try once more on a fresh one below
        except BaseException:
            conn.invalidate()  # cancelled mid-ping: never hand the connection out again
            raise
        finally:
            conn.close()
        conn = self._sync_engine.raw_connection()
        try:
            self._ping_on(conn)
        except BaseException:
            conn.invalidate()
            raise
        finally:
            conn.close()

    def _ping_on(self, conn: PoolProxiedConnection) -> None:
        dbapi_connection = conn.dbapi_connection
        if dbapi_connection is None:
            raise DatabaseUnavailable("the pooled connection was closed")
        self._sync_engine.dialect.do_ping(dbapi_connection)

    # -- a consistent view ---------------------------------------------------------------

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """One connection in a read-only transaction with a stable view, as an AsyncSession.

        PostgreSQL: ``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY``; SQLite: a deferred
        ``BEGIN`` whose first read fixes the snapshot. Rolled back and returned at exit, also
        when the block is cancelled.
        """
        if self._override is not None:
            async with self._override() as bound:
                yield bound
            return
        try:
            conn = await self._connect_for_snapshot()
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            raise error from exc
        try:
            if self._sqlite:
                await conn.exec_driver_sql("BEGIN")
            else:
                await conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                await conn.begin()
            session = AsyncSession(bind=conn, expire_on_commit=False, autoflush=False)
            try:
                yield session
            finally:
                await run_to_completion(session.close())
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            raise error from exc
        finally:
            await run_to_completion(conn.close())

    async def _connect_for_snapshot(self) -> AsyncConnection:
        replicas = self._replicas
        if replicas is not None and replicas.usable:
            for replica in replicas.candidates(self._min_position):
                try:
                    return await replica.engine.connect()
                except Exception as exc:
                    if not is_connection_error(exc):
                        raise
                    replicas.mark_failed(replica, exc)
        return await self._engine.connect()

    # -- internals -------------------------------------------------------------------------

    def _dispatch(
        self, statement: Executable, params: Params | None, finish: Callable[[Result[Any]], _T]
    ) -> Any:
        if statement.is_dml:
            raise ReadOnlyError(
                "the read path refuses writes; use a UnitOfWork (Depends(get_uow)) for "
                f"{type(statement).__name__} statements"
            )
        # ORM-enabled statements need a Session to build entities; Core ones do not.
        if statement._propagate_attrs.get("compile_state_plugin") == "orm":
            return self._run(_orm, statement, params, finish)
        return self._run(_core, statement, params, finish)

    async def _run(
        self,
        how: Callable[[Connection, Executable, Params | None, Callable[[Result[Any]], _T]], _T],
        statement: Executable,
        params: Params | None,
        finish: Callable[[Result[Any]], _T],
    ) -> _T:
        override = self._override
        if override is not None:
            async with override() as session:
                return await session.run_sync(
                    lambda sync: how(sync.connection(), statement, params, finish)
                )
        try:
            return await greenlet_spawn(self._on_connection, how, statement, params, finish)
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            raise error from exc

    def _on_connection(
        self,
        how: Callable[[Connection, Executable, Params | None, Callable[[Result[Any]], _T]], _T],
        statement: Executable,
        params: Params | None,
        finish: Callable[[Result[Any]], _T],
    ) -> _T:
        # Runs in the greenlet: checkout, execute, fetch and checkin, nothing held after.
        replicas = self._replicas
        if replicas is not None and replicas.usable:
            for replica in replicas.candidates(self._min_position):
                try:
                    return self._read_on(replica.sync_engine, how, statement, params, finish)
                except Exception as exc:
                    if not is_connection_error(exc):
                        raise
                    if not isinstance(exc, sa_exc.TimeoutError):  # a busy pool is not down
                        replicas.mark_failed(replica, exc)
        return self._read_on(self._sync_engine, how, statement, params, finish)

    def _read_on(
        self,
        sync_engine: Engine,
        how: Callable[[Connection, Executable, Params | None, Callable[[Result[Any]], _T]], _T],
        statement: Executable,
        params: Params | None,
        finish: Callable[[Result[Any]], _T],
    ) -> _T:
        conn = sync_engine.connect()
        try:
            return how(conn, statement, params, finish)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        finally:
            conn.close()
        # The pooled connection was dead (server restarted, backend killed); SQLAlchemy has
        # invalidated the pool. Reading again on a fresh connection is safe.
        with sync_engine.connect() as conn:
            return how(conn, statement, params, finish)


def _build_get(model: type[Any]) -> tuple[Select[Any], tuple[str, ...]]:
    mapper = inspect(model)
    names = tuple(f"pk_{index}" for index in range(len(mapper.primary_key)))
    criteria = [
        column == bindparam(name, type_=column.type)
        for column, name in zip(mapper.primary_key, names, strict=True)
    ]
    return select(model).where(*criteria), names


def _core(
    conn: Connection,
    statement: Executable,
    params: Params | None,
    finish: Callable[[Result[Any]], _T],
) -> _T:
    return finish(conn.execute(statement, params))


def _orm(
    conn: Connection,
    statement: Executable,
    params: Params | None,
    finish: Callable[[Result[Any]], _T],
) -> _T:
    # close() at the end of the block detaches the loaded entities.
    with Session(bind=conn, expire_on_commit=False, autoflush=False) as session:
        return finish(session.execute(statement, params))


def _streams(statement: Executable) -> bool:
    options = statement.get_execution_options()
    return bool(options) and ("stream_results" in options or "yield_per" in options)


def _as_is(result: Result[Any]) -> Result[Any]:
    # Async drivers buffer every row at execute (SQLAlchemy's AsyncConnection.execute relies
    # on the same), so the result stays readable after the connection went back.
    return result


def _buffered(result: Result[Any]) -> Result[Any]:
    return result.freeze()()


def _scalar(result: Result[Any]) -> Any:
    return result.scalar()


def _scalars(result: Result[Any]) -> list[Any]:
    return list(result.scalars().all())


def _one_entity(result: Result[Any]) -> Any:
    # unique(): a joined eager load of a collection repeats the entity over several rows.
    return result.unique().scalar_one_or_none()


def _translate(exc: BaseException) -> Exception | None:
    """The db_manager error that ``exc`` means, or None to let it through unchanged."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlite_code = getattr(orig, "sqlite_errorcode", None)
        if getattr(orig, "sqlstate", None) == _READ_ONLY_SQLSTATE or (
            isinstance(sqlite_code, int) and sqlite_code & 0xFF == _SQLITE_READONLY
        ):
            return ReadOnlyError(
                "the read path refuses writes (the database answered: "
                f"{summarize(exc)}); use a UnitOfWork for writes"
            )
    if is_connection_error(exc):
        return as_unavailable(exc)
    return None
