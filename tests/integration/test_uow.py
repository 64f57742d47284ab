"""UnitOfWork against real databases: every ``db_settings`` test runs on SQLite and PostgreSQL.

Commit on success, roll back on error, explicit commit, single use, ``on_commit``, laziness,
commit failures and typed connection failures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from sqlalchemy import MetaData, String, Table, UniqueConstraint, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from structlog.testing import capture_logs

from db_manager import (
    Base,
    Database,
    DatabaseSettings,
    DatabaseUnavailable,
    UnitOfWork,
    UnitOfWorkStateError,
    create_engine,
)
from tests.support.ports import free_port
from tests.support.postgres import pg_backends, pg_fetch, pg_settings

PASSWORD = "p@ss:w/rd%"


class UowModel(Base):
    """Models of this module live in a MetaData of their own, never in ``Base.metadata``."""

    __abstract__ = True
    __plugin__ = "tests"
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)


class Note(UowModel):
    __tablename__ = "uow_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100), unique=True)


class PostgresOnlyModel(UowModel):
    """SQLite cannot create these; they get a MetaData of their own."""

    __abstract__ = True
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)


class DeferredNote(PostgresOnlyModel):
    """A unique constraint checked only at COMMIT (PostgreSQL)."""

    __tablename__ = "uow_deferred_notes"
    __table_args__ = (UniqueConstraint("code", deferrable=True, initially="DEFERRED"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20))


@pytest.fixture
async def engine(db_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_settings)
    async with engine.begin() as conn:
        await conn.run_sync(Note.metadata.create_all, tables=[cast(Table, Note.__table__)])
    try:
        yield engine
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def committed_notes(settings: DatabaseSettings) -> list[str]:
    """The notes a second, independent engine (so a second connection) can see."""
    other = create_engine(settings)
    try:
        async with other.connect() as conn:
            result = await conn.execute(select(Note.text).order_by(Note.id))
            return list(result.scalars())
    finally:
        await other.dispose()


def add_note(uow: UnitOfWork, value: str) -> Note:
    note = Note(text=value)
    uow.session.add(note)
    return note


class Boom(Exception):
    pass


# -- commit / rollback -----------------------------------------------------------------------


async def test_commits_when_block_exits_normally(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    async with UnitOfWork(engine) as uow:
        await uow.session.execute(insert(Note).values(text="kept"))

    assert uow.closed
    assert await committed_notes(db_settings) == ["kept"]


async def test_rolls_back_when_block_raises(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    with pytest.raises(Boom):
        async with UnitOfWork(engine) as uow:
            add_note(uow, "discarded")
            await uow.session.flush()
            raise Boom

    assert await committed_notes(db_settings) == []


async def test_rolls_back_when_block_raises_a_base_exception(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    with pytest.raises(KeyboardInterrupt):
        async with UnitOfWork(engine) as uow:
            add_note(uow, "discarded")
            await uow.session.flush()
            raise KeyboardInterrupt

    assert await committed_notes(db_settings) == []


async def test_rolls_back_when_block_is_cancelled(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    flushed = asyncio.Event()

    async def work() -> None:
        async with UnitOfWork(engine) as uow:
            add_note(uow, "discarded")
            await uow.session.flush()
            flushed.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await flushed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await committed_notes(db_settings) == []


async def test_explicit_commit_keeps_the_row_even_if_block_later_raises(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    with pytest.raises(Boom):
        async with UnitOfWork(engine) as uow:
            add_note(uow, "committed early")
            await uow.commit()
            add_note(uow, "written after the commit")
            await uow.session.flush()
            raise Boom

    assert await committed_notes(db_settings) == ["committed early"]


async def test_explicit_rollback_discards_earlier_work_and_the_block_goes_on(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    async with UnitOfWork(engine) as uow:
        add_note(uow, "rolled back")
        await uow.session.flush()
        await uow.rollback()
        add_note(uow, "after the rollback")

    assert await committed_notes(db_settings) == ["after the rollback"]


async def test_objects_stay_readable_after_commit(engine: AsyncEngine) -> None:
    async with UnitOfWork(engine) as uow:
        note = add_note(uow, "readable")

    # expire_on_commit=False: no lazy load (which would fail outside the session) is needed.
    assert note.id is not None
    assert note.text == "readable"


async def test_integrity_error_stays_distinguishable_and_rolls_back(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    async with UnitOfWork(engine) as uow:
        add_note(uow, "original")

    with pytest.raises(IntegrityError) as info:
        async with UnitOfWork(engine) as uow:
            add_note(uow, "also discarded")
            await uow.session.flush()
            add_note(uow, "original")
            await uow.session.flush()

    assert not isinstance(info.value, DatabaseUnavailable)
    assert await committed_notes(db_settings) == ["original"]


async def test_accepts_an_async_sessionmaker(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)

    async with UnitOfWork(factory) as uow:
        add_note(uow, "via sessionmaker")

    assert await committed_notes(db_settings) == ["via sessionmaker"]


async def test_database_uow_factory_gives_fresh_units_of_work(
    db_settings: DatabaseSettings,
) -> None:
    database = Database(db_settings, metadata=Note.metadata)
    await database.start()
    try:
        await database.create_all()
        factory = database.uow_factory
        assert database.uow_factory is factory

        first, second = factory(), factory()
        assert first is not second
        async with first as uow:
            add_note(uow, "via factory")
        async with second as uow:
            count = await uow.session.scalar(select(func.count()).select_from(Note))
        assert count == 1
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


async def test_database_get_session_rolls_back_on_error(
    db_settings: DatabaseSettings,
) -> None:
    database = Database(db_settings, metadata=Note.metadata)
    await database.start()
    try:
        await database.create_all()
        with pytest.raises(Boom):
            async with database.get_session() as session:
                session.add(Note(text="discarded"))
                await session.flush()
                raise Boom
        assert await committed_notes(db_settings) == []
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


# -- single use ----------------------------------------------------------------------------


async def test_reuse_of_an_exited_unit_of_work_raises(engine: AsyncEngine) -> None:
    uow = UnitOfWork(engine)
    async with uow:
        add_note(uow, "once")

    with pytest.raises(UnitOfWorkStateError, match="closed"):
        async with uow:
            pass
    with pytest.raises(UnitOfWorkStateError, match="closed"):
        _ = uow.session
    with pytest.raises(UnitOfWorkStateError):
        await uow.commit()
    with pytest.raises(UnitOfWorkStateError):
        uow.on_commit(lambda: None)


async def test_reuse_after_a_failed_block_raises(engine: AsyncEngine) -> None:
    uow = UnitOfWork(engine)
    with pytest.raises(Boom):
        async with uow:
            raise Boom

    with pytest.raises(UnitOfWorkStateError):
        async with uow:
            pass


async def test_entering_twice_raises(engine: AsyncEngine) -> None:
    async with UnitOfWork(engine) as uow:
        with pytest.raises(UnitOfWorkStateError):
            async with uow:
                pass


async def test_session_outside_the_block_raises(engine: AsyncEngine) -> None:
    with pytest.raises(UnitOfWorkStateError, match="not entered"):
        _ = UnitOfWork(engine).session


# -- on_commit -------------------------------------------------------------------------------


async def test_on_commit_callbacks_run_after_the_commit(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    seen: list[tuple[str, list[str]]] = []

    async def async_callback() -> None:
        # Runs after COMMIT: another connection already sees the row.
        seen.append(("async", await committed_notes(db_settings)))

    async with UnitOfWork(engine) as uow:
        add_note(uow, "with callbacks")
        uow.on_commit(async_callback)
        uow.on_commit(lambda: seen.append(("sync", [])))
        assert seen == []

    assert seen == [("async", ["with callbacks"]), ("sync", [])]


async def test_on_commit_callbacks_run_after_an_explicit_commit_only_once(
    engine: AsyncEngine,
) -> None:
    calls: list[str] = []

    async with UnitOfWork(engine) as uow:
        add_note(uow, "first")
        uow.on_commit(lambda: calls.append("first"))
        await uow.commit()
        assert calls == ["first"]
        add_note(uow, "second")
        uow.on_commit(lambda: calls.append("second"))

    assert calls == ["first", "second"]


async def test_on_commit_callbacks_never_run_after_rollback(engine: AsyncEngine) -> None:
    calls: list[str] = []

    with pytest.raises(Boom):
        async with UnitOfWork(engine) as uow:
            add_note(uow, "discarded")
            uow.on_commit(lambda: calls.append("block raised"))
            raise Boom

    async with UnitOfWork(engine) as uow:
        uow.on_commit(lambda: calls.append("rolled back explicitly"))
        await uow.rollback()
        uow.on_commit(lambda: calls.append("registered after the rollback"))

    assert calls == ["registered after the rollback"]


async def test_failing_on_commit_callback_is_logged_and_does_not_undo_the_commit(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    calls: list[str] = []

    def failing() -> None:
        raise RuntimeError("callback broke")

    with capture_logs() as logs:
        async with UnitOfWork(engine) as uow:
            add_note(uow, "survives")
            uow.on_commit(failing)
            uow.on_commit(lambda: calls.append("next callback"))

    assert await committed_notes(db_settings) == ["survives"]
    assert calls == ["next callback"]
    failures = [entry for entry in logs if entry["event"] == "on_commit callback failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert "failing" in failures[0]["callback"]


# -- laziness --------------------------------------------------------------------------------


async def test_unit_of_work_that_does_nothing_opens_no_connection(
    db_settings: DatabaseSettings, backend: str
) -> None:
    engine = create_engine(db_settings)
    connects: list[object] = []
    checkouts: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda *args: connects.append(args))
    event.listen(engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
    database = db_settings.database or ""
    try:
        before = len(await pg_backends(database)) if backend == "postgres" else 0

        for _ in range(3):
            async with UnitOfWork(engine) as uow:
                assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
                uow.on_commit(lambda: None)
            assert not uow.used_database

        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert connects == []
        assert checkouts == []
        if backend == "postgres":
            assert before == 0
            assert await pg_backends(database) == []
    finally:
        await engine.dispose()


async def test_only_the_first_statement_opens_the_connection(engine: AsyncEngine) -> None:
    await engine.dispose()  # forget the connection the fixture used to create the table
    checkouts: list[object] = []
    event.listen(engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))

    async with UnitOfWork(engine) as uow:
        _ = uow.session  # asking for the session is not a round trip either
        assert checkouts == []
        await uow.session.execute(select(1))
        assert len(checkouts) == 1
        assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]

    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# -- commit failure (PostgreSQL) -------------------------------------------------------------


@pytest.mark.postgres
async def test_commit_failure_leaves_the_block_and_the_row_is_absent(pg_database: str) -> None:
    engine = create_engine(pg_settings(pg_database))
    calls: list[str] = []
    try:
        async with engine.begin() as conn:
            await conn.run_sync(DeferredNote.metadata.create_all)

        with pytest.raises(IntegrityError, match="uq_tests__uow_deferred_notes_code"):
            async with UnitOfWork(engine) as uow:
                uow.session.add_all([DeferredNote(code="same"), DeferredNote(code="same")])
                await uow.session.flush()  # a deferred constraint lets both rows in ...
                uow.on_commit(lambda: calls.append("must not run"))
                reached_end_of_block = True
        # ... and only COMMIT fails, after the block's last statement.
        assert reached_end_of_block
        assert calls == []
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(DeferredNote))
        assert count == 0
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_explicit_commit_failure_raises_inside_the_block(pg_database: str) -> None:
    engine = create_engine(pg_settings(pg_database))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(DeferredNote.metadata.create_all)

        with pytest.raises(IntegrityError):
            async with UnitOfWork(engine) as uow:
                uow.session.add_all([DeferredNote(code="dup"), DeferredNote(code="dup")])
                await uow.commit()
                pytest.fail("commit() must raise")  # pragma: no cover
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


# -- the connection dies under us (PostgreSQL) -----------------------------------------------


async def terminate_backend(pid: int) -> None:
    await pg_fetch("SELECT pg_terminate_backend($1)", pid)


@pytest.mark.postgres
async def test_cleanup_failure_never_hides_the_original_error(pg_database: str) -> None:
    engine = create_engine(pg_settings(pg_database))
    try:
        with capture_logs(), pytest.raises(Boom):
            async with UnitOfWork(engine) as uow:
                pid = await uow.session.scalar(text("SELECT pg_backend_pid()"))
                await terminate_backend(int(pid))
                raise Boom  # the rollback that follows meets a dead connection
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

        async with UnitOfWork(engine) as uow:  # the pool recovers
            assert await uow.session.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_statement_on_a_killed_connection_raises_database_unavailable(
    pg_database: str,
) -> None:
    engine = create_engine(pg_settings(pg_database))
    try:
        with capture_logs(), pytest.raises(DatabaseUnavailable):
            async with UnitOfWork(engine) as uow:
                pid = await uow.session.scalar(text("SELECT pg_backend_pid()"))
                await terminate_backend(int(pid))
                await uow.session.execute(text("SELECT 1"))
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


# -- a database that refuses connections -----------------------------------------------------


def unreachable(port: int, **overrides: Any) -> DatabaseSettings:
    values: dict[str, Any] = {
        "driver": "postgresql+asyncpg",
        "host": "127.0.0.1",
        "port": port,
        "user": "app",
        "password": PASSWORD,
        "database": "app_db",
        "connect_timeout": 1.0,
    }
    values.update(overrides)
    return DatabaseSettings(**values)


def assert_clear_message(error: BaseException, port: int) -> None:
    message = str(error)
    assert "\n" not in message
    assert f"127.0.0.1:{port}/app_db" in message
    assert PASSWORD not in message
    assert "p%40ss" not in message


@pytest.mark.parametrize("server", ["refusing", "silent"])
async def test_database_start_raises_database_unavailable_within_the_connect_timeout(
    server: str, silent_port: int
) -> None:
    port = free_port() if server == "refusing" else silent_port
    database = Database(unreachable(port))

    started = time.monotonic()
    with capture_logs(), pytest.raises(DatabaseUnavailable) as info:
        await database.start()
    elapsed = time.monotonic() - started

    assert elapsed < 1.0 + 0.5
    assert_clear_message(info.value, port)
    assert "cannot reach the database" in str(info.value)
    assert not database.started


@pytest.mark.parametrize("server", ["refusing", "silent"])
async def test_unit_of_work_statement_raises_database_unavailable_within_the_connect_timeout(
    server: str, silent_port: int
) -> None:
    port = free_port() if server == "refusing" else silent_port
    engine = create_engine(unreachable(port))
    try:
        started = time.monotonic()
        with capture_logs(), pytest.raises(DatabaseUnavailable) as info:
            async with UnitOfWork(engine) as uow:
                await uow.session.execute(text("SELECT 1"))
        elapsed = time.monotonic() - started

        assert elapsed < 1.0 + 0.5
        assert PASSWORD not in str(info.value)
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_session_of_a_failed_unit_of_work_is_closed(engine: AsyncEngine) -> None:
    with pytest.raises(Boom):
        async with UnitOfWork(engine) as uow:
            session: AsyncSession = uow.session
            await session.execute(select(1))
            raise Boom

    assert not session.in_transaction()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
