"""aiogram FSM state in the update's transaction: ``SqlAlchemyStorage``.

::

    dispatcher = Dispatcher(storage=SqlAlchemyStorage())   # or SqlAlchemyStorage(uow_factory)
    setup_dispatcher(dispatcher, database.uow_factory)     # binds the factory, nests the FSM

Contract:

* **Inside an update** handled through :class:`~db_manager.telegram.UnitOfWorkMiddleware`
  every storage call runs on that update's unit of work (found through a contextvar the
  middleware sets around the handler): state and data commit with the handler's writes or
  roll back with them. aiogram reads ``raw_state`` in its FSM middleware, an *outer*
  update middleware that runs before ours; :func:`~db_manager.telegram.current.nest_fsm`
  (called by ``setup_dispatcher``) moves it just inside ours, so that read is in the
  transaction too.
* **Outside an update** (a background job) each call opens its own short unit of work from
  the storage's ``uow_factory``; ``async with uow, bind_unit_of_work(uow):`` makes a job's
  calls join its own unit of work instead.
* **No lost updates.** The first access to a key in a transaction locks its row: on
  PostgreSQL an ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` that creates the row or
  takes its lock (one statement, no check-then-insert race); on SQLite a locking read
  (``with_for_update()``: the unit of work takes the writer lock, ``BEGIN IMMEDIATE``, if
  an earlier write has not already). A second update of the key, in any
  process, waits at its first storage access until the first commits, then reads the
  committed value. aiogram's event isolation is therefore not needed for correctness,
  across processes or within one: ``SimpleEventIsolation`` only keeps same-process waiters
  from holding a pooled connection while they wait (they wait on an asyncio lock instead),
  and ``RedisEventIsolation`` adds nothing but a round trip. What the row lock does not
  serialize: work a handler does before its first storage access (none with the nested FSM
  middleware, which reads the state first) and Bot API calls, which no rollback undoes.
  Two updates that lock two keys in opposite orders deadlock; PostgreSQL aborts one, which
  leaves as a transient error (the webhook answers 503 and Telegram retries it).
* **Cost.** Rows are cached per key in the transaction: lock+read once, write once, just
  before COMMIT (a class-level ``before_commit`` listener). A handler that reads and sets
  state and data adds two statements and no transaction. A savepoint rolled back does not
  undo FSM changes made inside it (they are written at the outer commit).

Importing this module adds ``db_manager__telegram_fsm`` to ``db_manager.Base.metadata``. A key's
row stays once created (on PostgreSQL the first access creates it: it is what the lock is
taken on); a cleared key keeps a row with no state and empty data.
``thread_id=None`` is stored as 0 and ``business_connection_id=None`` as ``''`` (primary key
columns cannot be NULL), the same keys aiogram's ``DefaultKeyBuilder`` merges.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import StateType, StorageKey
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Row,
    String,
    Table,
    bindparam,
    event,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import Executable

from db_manager.base import Base
from db_manager.errors import DatabaseManagerError
from db_manager.telegram.current import UnitOfWorkStorage, bind_unit_of_work, current_unit_of_work
from db_manager.uow import UnitOfWork, UnitOfWorkFactory, UnitOfWorkSession

__all__ = ["FsmRecord", "SqlAlchemyStorage", "bind_unit_of_work"]

_CACHE_KEY = "db_manager.fsm"


class FsmRecord(Base):
    """One FSM key: its state name and data."""

    __tablename__ = "db_manager__telegram_fsm"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    thread_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    business_connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    destiny: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(255), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


_KEY_COLUMNS = ("bot_id", "chat_id", "user_id", "thread_id", "business_connection_id", "destiny")
_TABLE: Table = FsmRecord.__table__  # type: ignore[assignment]
_BIND = {name: bindparam(name, type_=_TABLE.c[name].type) for name in (*_KEY_COLUMNS, "state")}
_BIND["data"] = bindparam("data", type_=_TABLE.c.data.type)
_BIND["updated_at"] = bindparam("updated_at", type_=_TABLE.c.updated_at.type)
_WHERE = [_TABLE.c[name] == _BIND[name] for name in _KEY_COLUMNS]
_INSERT_VALUES = {name: _BIND[name] for name in (*_KEY_COLUMNS, "state", "data")}

# PostgreSQL: create the row or lock it, and read it, in one statement. DO UPDATE (not DO
# NOTHING) because it locks the existing row and RETURNING then gives its latest committed
# version; a SELECT ... FOR UPDATE after DO NOTHING would be a second statement.
_pg_lock = postgresql.insert(_TABLE).values(_INSERT_VALUES)
_PG_LOCK = _pg_lock.on_conflict_do_update(
    index_elements=list(_KEY_COLUMNS), set_={"state": _TABLE.c.state}
).returning(_TABLE.c.state, _TABLE.c.data)
# SQLite: a locking read takes the writer lock (db_manager._sqlite), held until COMMIT.
_SQLITE_READ = select(_TABLE.c.state, _TABLE.c.data).where(*_WHERE).with_for_update()


def _upsert(insert: Any) -> Executable:
    stmt = insert(_TABLE).values({**_INSERT_VALUES, "updated_at": _BIND["updated_at"]})
    new = stmt.excluded
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(_KEY_COLUMNS),
        set_={"state": new.state, "data": new.data, "updated_at": new.updated_at},
    )


# PostgreSQL: the lock statement created the row if it was missing, so a plain UPDATE (no
# speculative insertion into the primary key first); SQLite: the row may not exist yet.
_PG_UPDATE = (
    update(_TABLE)
    # Key parameters renamed: an UPDATE reserves the column names for its SET values.
    .where(*[_TABLE.c[name] == bindparam(f"k_{name}") for name in _KEY_COLUMNS])
    .values(state=_BIND["state"], data=_BIND["data"], updated_at=_BIND["updated_at"])
)
_WRITE = {"postgresql": _PG_UPDATE, "sqlite": _upsert(sqlite.insert)}


class _Entry:
    __slots__ = ("data", "dirty", "state")

    def __init__(self, state: str | None, data: dict[str, Any]) -> None:
        self.state = state
        self.data = data
        self.dirty = False


class _TransactionCache:
    """The keys read in one root transaction of one session, and whether each changed."""

    __slots__ = ("entries", "transaction")

    def __init__(self, transaction: object) -> None:
        self.transaction = transaction
        self.entries: dict[tuple[Any, ...], _Entry] = {}


def _params(key: StorageKey) -> dict[str, Any]:
    return {
        "bot_id": key.bot_id,
        "chat_id": key.chat_id,
        "user_id": key.user_id,
        "thread_id": key.thread_id or 0,
        "business_connection_id": key.business_connection_id or "",
        "destiny": key.destiny,
    }


def _write(session: Session, params: dict[str, Any], entry: _Entry) -> None:
    entry.dirty = False
    dialect = session.get_bind().dialect.name
    values = {"state": entry.state, "data": entry.data, "updated_at": dt.datetime.now(dt.UTC)}
    if dialect == "postgresql":
        values.update({f"k_{name}": value for name, value in params.items()})
    else:
        values.update(params)
    session.execute(_WRITE[dialect], values)


@event.listens_for(UnitOfWorkSession, "before_commit")
def _flush_fsm(session: Session) -> None:
    cache: _TransactionCache | None = session.info.get(_CACHE_KEY)
    if cache is None or cache.transaction is not session.get_transaction():
        return
    for key, entry in cache.entries.items():
        if entry.dirty:
            _write(session, dict(zip(_KEY_COLUMNS, key, strict=True)), entry)


class SqlAlchemyStorage(UnitOfWorkStorage):
    """aiogram FSM storage in ``db_manager__telegram_fsm``, transactional with the update."""

    def __init__(self, uow_factory: UnitOfWorkFactory[Any] | None = None) -> None:
        self.uow_factory = uow_factory

    def __repr__(self) -> str:
        return f"<SqlAlchemyStorage uow_factory={self.uow_factory!r}>"

    async def _entry(self, uow: UnitOfWork, key: StorageKey) -> tuple[_Entry, dict[str, Any]]:
        session = uow.session
        params = _params(key)
        row_key = tuple(params.values())
        sync = session.sync_session
        cache: _TransactionCache | None = sync.info.get(_CACHE_KEY)
        if cache is not None and cache.transaction is sync.get_transaction():
            entry = cache.entries.get(row_key)
            if entry is not None:
                return entry, params
        dialect = session.get_bind().dialect.name
        row: Row[Any, Any] | None
        if dialect == "postgresql":
            row = (await session.execute(_PG_LOCK, {**params, "state": None, "data": {}})).one()
        elif dialect == "sqlite":
            row = (await session.execute(_SQLITE_READ, params)).one_or_none()
        else:  # pragma: no cover - only the two supported dialects are configured
            raise DatabaseManagerError(f"SqlAlchemyStorage does not support {dialect}")
        entry = _Entry(row.state, dict(row.data)) if row is not None else _Entry(None, {})
        transaction = sync.get_transaction()  # begun by the statement above
        if cache is None or cache.transaction is not transaction:
            cache = _TransactionCache(transaction)
            sync.info[_CACHE_KEY] = cache
        cache.entries[row_key] = entry
        return entry, params

    async def _changed(self, uow: UnitOfWork, entry: _Entry, params: dict[str, Any]) -> None:
        entry.dirty = True
        sync = uow.session.sync_session
        if not isinstance(sync, UnitOfWorkSession):  # no before_commit listener: write now
            await uow.session.run_sync(_write, params, entry)

    def _own_unit_of_work(self) -> UnitOfWork:
        if self.uow_factory is None:
            raise DatabaseManagerError(
                "SqlAlchemyStorage was called outside an update and has no uow_factory; pass "
                "one to SqlAlchemyStorage(...) or call setup_dispatcher() first"
            )
        uow: UnitOfWork = self.uow_factory()
        return uow

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        name = state.state if isinstance(state, State) else state
        uow = current_unit_of_work()
        if uow is None:
            async with self._own_unit_of_work() as own:
                with bind_unit_of_work(own):
                    return await self.set_state(key, state)
        entry, params = await self._entry(uow, key)
        if entry.state != name:
            entry.state = name
            await self._changed(uow, entry, params)

    async def get_state(self, key: StorageKey) -> str | None:
        uow = current_unit_of_work()
        if uow is None:
            async with self._own_unit_of_work() as own:
                with bind_unit_of_work(own):
                    return await self.get_state(key)
        entry, _ = await self._entry(uow, key)
        return entry.state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        uow = current_unit_of_work()
        if uow is None:
            async with self._own_unit_of_work() as own:
                with bind_unit_of_work(own):
                    return await self.set_data(key, data)
        entry, params = await self._entry(uow, key)
        new = copy.deepcopy(dict(data))
        if entry.data != new:
            entry.data = new
            await self._changed(uow, entry, params)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        uow = current_unit_of_work()
        if uow is None:
            async with self._own_unit_of_work() as own:
                with bind_unit_of_work(own):
                    return await self.get_data(key)
        entry, _ = await self._entry(uow, key)
        return copy.deepcopy(entry.data)

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        # Overridden so that, outside an update, read and write share one locked transaction.
        uow = current_unit_of_work()
        if uow is None:
            async with self._own_unit_of_work() as own:
                with bind_unit_of_work(own):
                    return await self.update_data(key, data)
        current = await self.get_data(key)
        current.update(data)
        await self.set_data(key, current)
        return current

    async def close(self) -> None:
        """Nothing to close: the engine belongs to the Database."""
