"""SQLite's write lock through units of work: taken by the first write, never by a read.

A unit of work on SQLite begins its transaction with its first write (pysqlite emits
``BEGIN IMMEDIATE`` inside that statement's own driver call), a locking read
(``with_for_update()``) or a savepoint; plain reads before that run outside any transaction,
as each statement does under PostgreSQL's READ COMMITTED. So a read-then-write never meets
``SQLITE_BUSY`` (no stale read snapshot has to be upgraded: the write waits on the busy
timeout instead), reads never wait for a writer, and a single SELECT costs the hand-written
baseline's aiosqlite thread hops. A failed COMMIT gives its lock back.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from db_manager import Base, Database, DatabaseSettings
from db_manager.fastapi import UowDep, database_lifespan, install_error_handlers
from tests.integration.fastapi.fastapi_support import in_process
from tests.support.pools import checked_out
from tests.support.postgres import sqlite_settings
from tests.support.thread_hops import ThreadHops

WRITERS = 20


class LockingModel(Base):
    __abstract__ = True
    __plugin__ = "locking"
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)


class Counter(LockingModel):
    __tablename__ = "counters"  # locking__counters

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int]


def settings_for(path: Path, **overrides: Any) -> DatabaseSettings:
    # Room for every concurrent unit of work at once, so they meet at SQLite, not the pool.
    values: dict[str, Any] = {"pool_size": WRITERS, "max_overflow": 0, **overrides}
    return sqlite_settings(path, **values)


@asynccontextmanager
async def started(settings: DatabaseSettings) -> AsyncIterator[Database]:
    database = Database(settings, metadata=LockingModel.metadata)
    await database.start()
    try:
        await database.create_all()
        async with database.uow_factory() as uow:
            await uow.session.execute(insert(Counter).values(id=1, value=0))
        yield database
    finally:
        await database.dispose()


def outside_begin_immediate(path: Path) -> None:
    """Take and give back the write lock from a connection of another kind, not waiting:
    raises ``sqlite3.OperationalError: database is locked`` if anyone holds it."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    finally:
        connection.close()


async def counter_value(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT value FROM locking__counters").fetchone()[0])
    finally:
        connection.close()


# -- 1. read, then write: all commit, none meets SQLITE_BUSY -----------------------------------


async def test_concurrent_read_then_update_units_of_work_all_commit(tmp_path: Path) -> None:
    """Each reads the row, lets the others read too, then increments it in SQL."""
    path = tmp_path / "rw.sqlite3"
    async with started(settings_for(path)) as database:
        seen: list[int] = []

        async def read_then_update() -> None:
            async with database.uow_factory() as uow:
                seen.append(await uow.session.scalar(select(Counter.value)) or 0)
                await asyncio.sleep(0.02)  # every other unit of work reads meanwhile
                await uow.session.execute(update(Counter).values(value=Counter.value + 1))

        results = await asyncio.gather(
            *(read_then_update() for _ in range(WRITERS)), return_exceptions=True
        )

        assert [r for r in results if r is not None] == []  # no "database is locked"
        assert await counter_value(path) == WRITERS
        assert seen.count(0) > 1  # the reads did overlap: a write lock did not serialize them
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_concurrent_locking_read_modify_write_loses_no_update(tmp_path: Path) -> None:
    """The ORM way (read the object, change it, flush) with ``with_for_update()``, as on
    PostgreSQL: the read takes the write lock, so no two of them read the same value."""
    path = tmp_path / "rmw.sqlite3"
    async with started(settings_for(path)) as database:

        async def increment() -> None:
            async with database.uow_factory() as uow:
                counter = await uow.session.get(Counter, 1, with_for_update=True)
                assert counter is not None
                await asyncio.sleep(0.005)
                counter.value += 1

        results = await asyncio.gather(
            *(increment() for _ in range(WRITERS)), return_exceptions=True
        )

        assert [r for r in results if r is not None] == []
        assert await counter_value(path) == WRITERS


async def test_a_savepoint_before_any_write_rolls_back_with_its_unit_of_work(
    tmp_path: Path,
) -> None:
    """SQLite commits a transaction that a SAVEPOINT opened when that savepoint is released;
    a unit of work that read first and then nests must still roll back as a whole."""
    path = tmp_path / "nested.sqlite3"
    async with started(settings_for(path)) as database:
        with pytest.raises(RuntimeError, match="after the savepoint"):
            async with database.uow_factory() as uow:
                await uow.session.scalar(select(Counter.value))
                async with uow.session.begin_nested():
                    await uow.session.execute(update(Counter).values(value=42))
                raise RuntimeError("after the savepoint")

        assert await counter_value(path) == 0


async def test_a_core_transaction_holds_the_write_lock_from_its_first_read(
    tmp_path: Path,
) -> None:
    """``engine.begin()`` (create_all, migrations, scripts) stays serializable: its first
    statement, a read here, already runs under ``BEGIN IMMEDIATE``."""
    path = tmp_path / "core.sqlite3"
    async with started(settings_for(path)) as database:
        async with database.engine.begin() as conn:
            assert await conn.scalar(select(Counter.value)) == 0
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                outside_begin_immediate(path)
        outside_begin_immediate(path)  # given back at COMMIT


# -- 2. reads do not queue behind a writer ------------------------------------------------------


def reading_app(settings: DatabaseSettings) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(settings, metadata=LockingModel.metadata))
    install_error_handlers(app)

    @app.get("/counter")
    async def read_counter(uow: UowDep) -> dict[str, int]:
        return {"value": await uow.session.scalar(select(Counter.value)) or 0}

    return app


async def test_reads_through_uowdep_finish_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "readers.sqlite3"
    settings = settings_for(path)
    async with started(settings) as database:
        app = reading_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            assert (await client.get("/counter")).status_code == 200  # tables exist, warm
            locked = asyncio.Event()
            writer_done = 0.0

            async def writer() -> None:
                nonlocal writer_done
                async with database.uow_factory() as uow:
                    await uow.session.execute(update(Counter).values(value=99))
                    locked.set()
                    await asyncio.sleep(1.0)  # the write lock is held all this time
                writer_done = time.monotonic()

            async def reader() -> tuple[int, int, float]:
                response = await client.get("/counter")
                return response.status_code, response.json()["value"], time.monotonic()

            writing = asyncio.create_task(writer())
            await locked.wait()
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                outside_begin_immediate(path)  # the control: the lock really is held
            reads = await asyncio.gather(*(reader() for _ in range(10)))
            await writing

        assert [(status, value) for status, value, _ in reads] == [(200, 0)] * 10
        assert max(done for _, _, done in reads) < writer_done
        assert await counter_value(path) == 99


# -- 3. no thread hop for BEGIN ------------------------------------------------------------------


async def test_a_single_select_costs_no_more_thread_hops_than_the_hand_written_baseline(
    tmp_path: Path,
) -> None:
    """The baseline: aiosqlite's default setup, ``async with session.begin()`` around the
    SELECT. Neither pre-pings (the baseline has no pre-ping; db_manager does not on SQLite)."""
    path = tmp_path / "hops.sqlite3"
    hops = ThreadHops()
    with hops.installed():
        async with started(settings_for(path)) as database:
            engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=1)
            baseline = async_sessionmaker(engine, expire_on_commit=False)
            try:

                async def project() -> None:
                    async with database.uow_factory() as uow:
                        assert await uow.session.scalar(select(Counter.value)) == 0

                async def hand_written() -> None:
                    async with baseline() as session, session.begin():
                        assert await session.scalar(select(Counter.value)) == 0

                counts = {}
                for name, unit in (("project", project), ("baseline", hand_written)):
                    await unit()  # warm: the pooled connection is open and tuned
                    hops.reset()
                    for _ in range(10):
                        await unit()
                    counts[name] = hops.hops / 10
            finally:
                await engine.dispose()

    assert counts["baseline"] > 0  # the counter sees the hops at all
    # No hop for BEGIN; and none for a rollback at checkin when nothing is open (the
    # baseline's pool sends one after every COMMIT), so one fewer than the baseline.
    assert counts["project"] <= counts["baseline"]


# -- 4. a failed COMMIT gives the write lock back (issue 11, point 7) -------------------------


async def test_failed_commits_leave_no_transaction_open(tmp_path: Path) -> None:
    """A deferred foreign key fails at COMMIT (409); the pooled connection must not stay
    inside that transaction: the next request works, and anyone else can take the lock."""
    path = tmp_path / "failed_commit.sqlite3"
    settings = sqlite_settings(path)
    statuses: list[int] = []
    async with in_process(settings) as run:
        for i in range(20):
            failed = await run.client.post("/things", json={"name": f"orphan-{i}", "owner_id": 999})
            statuses.append(failed.status_code)
            outside_begin_immediate(path)  # at once: raises if the failed one kept the lock
            valid = await run.client.post("/things", json={"name": f"thing-{i}"})
            statuses.append(valid.status_code)
        assert checked_out(run.app) == 0

    assert statuses == [409, 201] * 20
    connection = sqlite3.connect(path)
    try:
        names = {row[0] for row in connection.execute("SELECT name FROM fastapi_test__things")}
    finally:
        connection.close()
    assert names == {f"thing-{i}" for i in range(20)}
