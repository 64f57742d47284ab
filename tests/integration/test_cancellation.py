"""Cancellation: a cancelled unit of work gives its connection back and stops its query.

Warnings are errors for the whole suite (pyproject), so a "non-checked-in connection"
warning, an unclosed transport or an un-awaited coroutine fails these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from sqlalchemy import MetaData, event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column
from structlog.testing import capture_logs

from db_manager import Base, DatabaseSettings, UnitOfWork, create_engine
from tests.support.pools import assert_no_leak_warnings
from tests.support.postgres import pg_backends, pg_settings
from tests.support.waiting import wait_for

SEED = 20261125
ROUNDS = 100
STEPS = 20  # a round of small_writes takes about as long as the longest delay (30 ms)
BATCH = 4


class CancelModel(Base):
    __abstract__ = True
    __plugin__ = "tests"
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)


class Item(CancelModel):
    __tablename__ = "cancel_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int]
    step: Mapped[int] = mapped_column(default=0)
    label: Mapped[str]


@pytest.fixture
async def engine(pg_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_settings(pg_database))
    async with engine.begin() as conn:
        await conn.run_sync(CancelModel.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


async def pg_sleep_running(database: str) -> bool:
    return any(
        row["state"] == "active" and "pg_sleep" in row["query"]
        for row in await pg_backends(database)
    )


async def assert_pool_healthy(engine: AsyncEngine, database: str) -> None:
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with UnitOfWork(engine) as uow:
        assert await uow.session.scalar(text("SELECT 1")) == 1
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert_no_leak_warnings()

    # Nothing held a transaction open, and once the pool is disposed no backend of ours
    # is left: every connection the process opened was either pooled or closed.
    assert not [row for row in await pg_backends(database) if "transaction" in row["state"]]
    await engine.dispose()

    async def no_backends() -> bool:
        return not await pg_backends(database)

    assert await wait_for(no_backends, timeout=3.0), await pg_backends(database)


# -- one cancellation during a long query ----------------------------------------------------


async def sleep_in_unit_of_work(engine: AsyncEngine, connected: asyncio.Event) -> None:
    async with UnitOfWork(engine) as uow:
        await uow.session.execute(insert(Item).values(n=1, label="before the sleep"))
        connected.set()
        await uow.session.execute(text("SELECT pg_sleep(5)"))
        pytest.fail("the sleep must be cancelled")  # pragma: no cover


@pytest.mark.postgres
async def test_task_cancelled_during_pg_sleep_returns_the_connection_and_stops_the_query(
    engine: AsyncEngine, pg_database: str
) -> None:
    connected = asyncio.Event()
    task = asyncio.create_task(sleep_in_unit_of_work(engine, connected))
    await connected.wait()
    assert await wait_for(lambda: pg_sleep_running(pg_database), timeout=3.0)

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0  # not the 5 s of the sleep

    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    async def query_gone() -> bool:
        return not await pg_sleep_running(pg_database)

    assert await wait_for(query_gone, timeout=3.0), await pg_backends(pg_database)
    async with engine.connect() as conn:  # the insert before the sleep was rolled back
        assert await conn.scalar(select(func.count()).select_from(Item)) == 0
    await assert_pool_healthy(engine, pg_database)


@pytest.mark.postgres
async def test_move_on_after_during_pg_sleep_returns_the_connection_and_stops_the_query(
    engine: AsyncEngine, pg_database: str
) -> None:
    connected = asyncio.Event()
    started = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        await sleep_in_unit_of_work(engine, connected)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 2.5

    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    async def query_gone() -> bool:
        return not await pg_sleep_running(pg_database)

    assert await wait_for(query_gone, timeout=3.0), await pg_backends(pg_database)
    await assert_pool_healthy(engine, pg_database)


# -- a cancellation that arrives while COMMIT is in flight -----------------------------------


SLOW_COMMIT = [
    # A deferred constraint trigger runs at COMMIT: the COMMIT itself takes a second.
    "CREATE FUNCTION tests__slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$",
    f"CREATE CONSTRAINT TRIGGER tests__slow_commit AFTER INSERT ON {Item.__tablename__} "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tests__slow_commit()",
]


async def commit_running(database: str) -> bool:
    return any(
        row["state"] == "active" and row["query"].strip().rstrip(";").upper() == "COMMIT"
        for row in await pg_backends(database)
    )


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["task.cancel", "anyio scope"])
async def test_cancellation_during_commit_lets_the_commit_finish(
    pg_database: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the block ended cleanly the work is committed, whoever cancels meanwhile (a client
    that hangs up): the COMMIT finishes, the cancellation is then delivered, and the connection
    (an overflow one, closed on return) is closed by the cleanup, not cut mid-close."""
    engine = create_engine(pg_settings(pg_database, pool_size=1, max_overflow=1))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(CancelModel.metadata.create_all)
            for statement in SLOW_COMMIT:
                await conn.execute(text(statement))
        holder = await engine.connect()  # the pool's one slot is taken: the write overflows
        await holder.scalar(text("SELECT 1"))

        callbacks_run: list[str] = []

        async def write() -> None:
            async with UnitOfWork(engine) as uow:
                await uow.session.execute(insert(Item).values(n=1, label="committed"))
                uow.on_commit(lambda: callbacks_run.append("after commit"))

        with caplog.at_level("ERROR"), capture_logs() as logs:
            if how == "task.cancel":
                task = asyncio.create_task(write())
                assert await wait_for(lambda: commit_running(pg_database), timeout=3.0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(write)
                        assert await wait_for(lambda: commit_running(pg_database), timeout=3.0)
                        scope.cancel()
                assert scope.cancelled_caught
        await holder.close()

        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            assert await conn.scalar(select(Item.label)) == "committed"
        assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
        # The caller was cancelled: its after-commit work does not run, and that is said.
        assert callbacks_run == []
        assert [(e["log_level"], e["event"], e["callbacks"]) for e in logs] == [
            ("warning", "on_commit callbacks skipped: cancelled during the commit", 1)
        ]
        await assert_pool_healthy(engine, pg_database)
    finally:
        await engine.dispose()


async def test_cancellation_between_statements_rolls_back_and_keeps_the_connection(
    db_settings: DatabaseSettings,
) -> None:
    """anyio cancels again and again until its scope is left; the rollback must still finish,
    so the connection goes back to the pool healthy instead of being invalidated."""
    engine = create_engine(db_settings)
    invalidated: list[object] = []
    event.listen(engine.sync_engine.pool, "invalidate", lambda *args: invalidated.append(args))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(CancelModel.metadata.create_all)

        for n in range(5):
            with anyio.move_on_after(0.05) as scope:
                async with UnitOfWork(engine) as uow:
                    await uow.session.execute(insert(Item).values(n=n, label="rolled back"))
                    await anyio.sleep(5)
            assert scope.cancelled_caught
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

        assert invalidated == []
        async with engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(Item)) == 0
    finally:
        await engine.dispose()
    assert_no_leak_warnings()


# -- many cancellations at random moments -----------------------------------------------------


async def small_writes(engine: AsyncEngine, n: int, done: set[int]) -> None:
    """Small writes with many await points: connect, execute, flush, explicit commits, and the
    final commit at the end of the block. Committed steps always form a prefix of whole batches.
    """
    async with UnitOfWork(engine) as uow:
        for step in range(STEPS):
            await uow.session.execute(insert(Item).values(n=n, step=step, label="execute"))
            uow.session.add(Item(n=n, step=step, label="flush"))
            await uow.session.flush()
            if step % BATCH == BATCH - 1 and step < STEPS - 1:
                await uow.commit()
    done.add(n)


async def assert_whole_batches_committed(engine: AsyncEngine, done: set[int]) -> None:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(Item.n, Item.step, Item.label))).all()
    committed: dict[int, set[tuple[int, str]]] = {}
    for n, step, label in rows:
        committed.setdefault(n, set()).add((step, label))
    every_step = {(step, label) for step in range(STEPS) for label in ("execute", "flush")}
    for n in done:  # whatever finished is committed in full
        assert committed.get(n) == every_step, n
    for n, seen in committed.items():  # the rest is committed up to a batch boundary
        steps = len(seen) // 2
        assert steps % BATCH == 0, (n, sorted(seen))
        assert seen == {(step, label) for step, label in every_step if step < steps}, n


async def cancel_with_task_cancel(
    engine: AsyncEngine, n: int, rng: random.Random, done: set[int]
) -> None:
    task = asyncio.create_task(small_writes(engine, n, done))
    await asyncio.sleep(rng.uniform(0, 0.030))
    task.cancel()
    if rng.random() < 0.3:
        # A second cancel a moment later lands in the rollback / close of the first.
        await asyncio.sleep(rng.uniform(0, 0.005))
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_with_move_on_after(
    engine: AsyncEngine, n: int, rng: random.Random, done: set[int]
) -> None:
    # anyio keeps cancelling (level-triggered) until the scope is left: also the cleanup.
    with anyio.move_on_after(rng.uniform(0, 0.030)):
        await small_writes(engine, n, done)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "cancel", [cancel_with_task_cancel, cancel_with_move_on_after], ids=["asyncio", "anyio"]
)
async def test_random_cancellations_leak_no_connection(
    engine: AsyncEngine,
    pg_database: str,
    cancel: Callable[[AsyncEngine, int, random.Random, set[int]], Awaitable[None]],
) -> None:
    rng = random.Random(SEED)
    done: set[int] = set()

    for n in range(ROUNDS):
        await cancel(engine, n, rng, done)
        assert engine.pool.checkedout() == 0, f"round {n}"  # type: ignore[attr-defined]

    # The delays span a whole round, so most rounds were cancelled somewhere inside it.
    assert ROUNDS - len(done) >= 10, "too few rounds were cancelled to mean anything"
    await assert_whole_batches_committed(engine, done)

    await assert_pool_healthy(engine, pg_database)


async def test_random_cancellations_on_both_backends_leave_the_pool_usable(
    db_settings: DatabaseSettings,
) -> None:
    """The same storm, shorter, also on SQLite (aiosqlite runs statements in a thread)."""
    engine = create_engine(db_settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(CancelModel.metadata.create_all)
        rng = random.Random(SEED + 1)
        done: set[int] = set()
        for n in range(40):
            if n % 2:
                await cancel_with_move_on_after(engine, n, rng, done)
            else:
                await cancel_with_task_cancel(engine, n, rng, done)
            assert engine.pool.checkedout() == 0, f"round {n}"  # type: ignore[attr-defined]
        await assert_whole_batches_committed(engine, done)

        async with UnitOfWork(engine) as uow:
            assert await uow.session.scalar(text("SELECT 1")) == 1
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    assert_no_leak_warnings()
