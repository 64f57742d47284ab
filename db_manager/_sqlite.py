"""SQLite's transactions and locks for the engines of :mod:`db_manager.engine`.

SQLite has one writer at a time. A transaction that read under a snapshot and then writes
cannot wait for the write lock: once another writer committed, its snapshot is stale and the
upgrade fails at once with ``SQLITE_BUSY`` (the busy timeout does not apply). So a
transaction must hold the write lock before it reads anything it will write on, and a
transaction that only reads should never take it. Three modes, chosen per connection with the
execution option :data:`SQLITE_BEGIN_OPTION`:

* ``"IMMEDIATE"`` (the default: Core connections, ``create_all``, migrations, the testing
  plugin): the first statement of a transaction, whatever it is, runs after
  ``BEGIN IMMEDIATE``, so the whole transaction (DDL included) is atomic and serialized.
* ``"FIRST_WRITE"`` (every unit of work's session on an engine, set in
  :mod:`db_manager.uow` when the session begins its connection): the
  transaction begins with the first statement that writes or locks. Plain reads before it
  run outside any transaction, each on the latest committed data, as every statement does
  under PostgreSQL's READ COMMITTED; they never take or wait for the write lock. A
  read-modify-write that must not lose a concurrent update locks what it reads first,
  ``select(...).with_for_update()``, as on PostgreSQL: on SQLite that begins the transaction
  with ``BEGIN IMMEDIATE`` before the read.
* ``"DEFERRED"``: a plain ``BEGIN`` before the first statement: one snapshot for several
  reads, no write lock until a write (which may then fail with ``SQLITE_BUSY``).

Where the BEGIN goes (measured, docs/benchmarks.md): aiosqlite runs each driver call on the
connection's own thread, and a hop there and back costs the event loop more than SQLite's
own work for a small statement. pysqlite's legacy transaction control emits ``BEGIN
IMMEDIATE`` (its ``isolation_level``) by itself, in the same call, before a statement
starting with INSERT, UPDATE, DELETE or REPLACE, and never before a SELECT: that is the
common case of both modes, at no hop. Any other statement that needs a transaction (a first
SELECT in IMMEDIATE mode, a locking read, a SAVEPOINT, DDL, a CTE-first write) gets its
``BEGIN`` on the statement's own cursor, one hop. Whether one is open is read from the
driver (``in_transaction``), never tracked on the side.

A connection goes back to the pool outside any transaction: the ``reset`` hook rolls back
what SQLite reports open, also after a failed COMMIT (a deferred foreign key), which
leaves SQLite's transaction and its lock open while SQLAlchemy considers it over and skips
its own rollback; a connection with nothing open goes back without a hop.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.sql.selectable import GenerativeSelect

from db_manager.config import DatabaseSettings

# Execution option naming a connection's mode: "IMMEDIATE", "FIRST_WRITE" or "DEFERRED".
SQLITE_BEGIN_OPTION: Final = "db_manager_sqlite_begin"
SQLITE_FIRST_WRITE: Final = "FIRST_WRITE"
# pysqlite begins a transaction itself before a statement opening with one of these (it
# skips comments too; one that opens with a comment gets its BEGIN here, one hop more).
_BEGINS_ITSELF = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def tune_sqlite(engine: AsyncEngine, settings: DatabaseSettings, *, memory: bool) -> None:
    """Pragmas, transaction modes and the reset of the main engine's connections."""
    busy_ms = int(settings.sqlite_busy_timeout * 1000)
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Legacy transaction control: pysqlite emits BEGIN IMMEDIATE before a write itself.
        dbapi_connection.isolation_level = "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(sync_engine, "before_cursor_execute", _begin_if_needed)
    event.listen(sync_engine, "reset", _leave_no_transaction_open)


def _begin_if_needed(
    conn: Connection,
    cursor: Any,
    statement: str,
    _parameters: Any,
    context: DefaultExecutionContext,
    _executemany: bool,
) -> None:
    if statement.lstrip()[:7].upper().startswith(_BEGINS_ITSELF):
        return  # pysqlite's own BEGIN IMMEDIATE, inside this very call
    mode = context.execution_options.get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
    if mode == SQLITE_FIRST_WRITE and _plain_read(context, statement):
        return
    driver = conn.connection.driver_connection
    if driver is None or driver.in_transaction or driver.isolation_level is None:
        return  # already begun, or an AUTOCOMMIT connection
    cursor.execute("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")


def _plain_read(context: DefaultExecutionContext, statement: str) -> bool:
    """A SELECT that does not lock (``with_for_update()``); unknown text counts as a write."""
    compiled = context.compiled
    if compiled is not None:
        if context.isinsert or context.isupdate or context.isdelete or context.isddl:
            return False
        selected = compiled.statement
        if isinstance(selected, GenerativeSelect):
            return selected._for_update_arg is None
    return statement.lstrip()[:6].upper() == "SELECT"


def _leave_no_transaction_open(
    dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    # The engine's own reset-on-return is off (engine.py): it rolled back unconditionally,
    # one hop per checkin, also after a COMMIT; yet it skipped the rollback exactly when it
    # was needed, after a failed COMMIT (SQLAlchemy then considers the transaction ended,
    # SQLite does not). The driver knows: no statement is in flight at checkin (a cancelled
    # one invalidates the connection instead), so its in_transaction is exact.
    if not state.asyncio_safe or state.terminate_only:
        return
    driver = record.driver_connection
    if driver is not None and driver.in_transaction:
        dbapi_connection.rollback()


def make_sqlite_read_only(engine: AsyncEngine, settings: DatabaseSettings) -> None:
    """The read engine's connections refuse writes and wait on the busy timeout."""
    busy_ms = int(settings.sqlite_busy_timeout * 1000)

    # A pool event, not a connection event: statements still run with no listener at all.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA query_only=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        finally:
            cursor.close()
