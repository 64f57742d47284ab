"""The read path: every ``db_settings`` test runs on SQLite and on PostgreSQL.

Reads see committed data, each statement gives its connection back, writes are refused,
snapshots are repeatable, connection failures are typed; and the two less public
SQLAlchemy names the reader relies on are pinned here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import (
    ForeignKey,
    MetaData,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload

from db_manager import (
    Base,
    Database,
    DatabaseSettings,
    DatabaseUnavailable,
    Reader,
    ReadOnlyError,
    create_read_engine,
)
from db_manager.fastapi import ReaderDep, database_lifespan, health_router
from tests.support.asgi import running
from tests.support.ports import free_port
from tests.support.postgres import (
    PG_ADMIN_DB,
    PG_HOST,
    PG_PORT,
    PG_USER,
    pg_settings,
    sqlite_settings,
)


class ReaderModel(Base):
    """Models of this module live in a MetaData of their own, never in ``Base.metadata``."""

    __abstract__ = True
    __plugin__ = "tests"
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)


class Shelf(ReaderModel):
    __tablename__ = "reader_shelves"

    id: Mapped[int] = mapped_column(primary_key=True)
    books: Mapped[list[Book]] = relationship(back_populates="shelf", order_by="Book.id")


class Book(ReaderModel):
    __tablename__ = "reader_books"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    shelf_id: Mapped[int | None] = mapped_column(ForeignKey("tests__reader_shelves.id"))
    shelf: Mapped[Shelf | None] = relationship(back_populates="books")


class Edition(ReaderModel):
    """A composite primary key."""

    __tablename__ = "reader_editions"

    book_id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int]


BOOK_TITLE = select(Book.__table__.c.title).where(Book.__table__.c.id == bindparam("id"))
COUNT_BOOKS = select(func.count()).select_from(Book.__table__)


@pytest.fixture
async def database(db_settings: DatabaseSettings) -> AsyncIterator[Database]:
    database = Database(db_settings, metadata=ReaderModel.metadata)
    await database.start()
    await database.create_all()
    async with database.uow_factory() as uow:
        uow.session.add(Shelf(id=1))
        uow.session.add_all([Book(id=i, title=f"book {i}", shelf_id=1) for i in (1, 2, 3)])
        uow.session.add(Edition(book_id=1, number=2, year=1999))
    try:
        yield database
        assert database.reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


async def count_books(database: Database) -> int:
    """The number of books, through the main engine (a UnitOfWork)."""
    async with database.uow_factory() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(Book)) or 0)


# -- pinned SQLAlchemy internals ------------------------------------------------------------


async def test_greenlet_spawn_is_importable_and_runs_sync_code_that_awaits() -> None:
    # The reader runs checkout + execute + checkin of a statement in one greenlet_spawn call.
    from sqlalchemy.util import await_only, greenlet_spawn

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    def sync_code(offset: int) -> int:
        return await_only(answer()) + offset

    assert await greenlet_spawn(sync_code, 1) == 43


def test_orm_statements_are_marked_by_the_compile_state_plugin() -> None:
    # The reader sends ORM statements through a Session and Core ones straight to the connection.
    assert select(Book)._propagate_attrs.get("compile_state_plugin") == "orm"
    assert BOOK_TITLE._propagate_attrs.get("compile_state_plugin") is None
    assert text("SELECT 1")._propagate_attrs.get("compile_state_plugin") is None


# -- reads ---------------------------------------------------------------------------------


async def test_get_returns_a_detached_entity_whose_columns_are_readable(database: Database) -> None:
    book = await database.reader.get(Book, 2)
    assert book is not None
    assert (book.id, book.title, book.shelf_id) == (2, "book 2", 1)
    from sqlalchemy import inspect

    assert inspect(book).detached


async def test_get_returns_none_for_a_missing_key(database: Database) -> None:
    assert await database.reader.get(Book, 404) is None


async def test_get_takes_a_tuple_for_a_composite_key(database: Database) -> None:
    edition = await database.reader.get(Edition, (1, 2))
    assert edition is not None and edition.year == 1999
    assert await database.reader.get(Edition, (1, 3)) is None


async def test_reads_see_data_committed_after_the_reader_was_built(database: Database) -> None:
    reader = database.reader
    assert await reader.scalar(COUNT_BOOKS) == 3
    async with database.uow_factory() as uow:
        uow.session.add(Book(id=4, title="book 4"))
    assert await reader.scalar(COUNT_BOOKS) == 4
    assert await reader.scalar(BOOK_TITLE, {"id": 4}) == "book 4"


async def test_execute_returns_a_buffered_result_readable_after_the_connection_is_back(
    database: Database,
) -> None:
    reader = database.reader
    result = await reader.execute(text("SELECT id, title FROM tests__reader_books ORDER BY id"))
    assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [tuple(row) for row in result] == [(1, "book 1"), (2, "book 2"), (3, "book 3")]


async def test_orm_statements_give_entities_and_may_load_relationships(database: Database) -> None:
    reader = database.reader
    books = (await reader.execute(select(Book).order_by(Book.id))).scalars().all()
    assert [book.title for book in books] == ["book 1", "book 2", "book 3"]
    shelves = await reader.scalars(select(Shelf).options(selectinload(Shelf.books)))
    assert [book.id for book in shelves[0].books] == [1, 2, 3]
    assert await reader.scalars(select(Book.title).where(Book.id < 3).order_by(Book.id)) == [
        "book 1",
        "book 2",
    ]


async def test_the_connection_is_given_back_after_every_statement(database: Database) -> None:
    reader = database.reader
    await reader.ping()  # the first connection exists
    pool_events: list[str] = []
    sync_engine = reader.engine.sync_engine
    event.listen(sync_engine, "checkout", lambda *_: pool_events.append("out"))
    event.listen(sync_engine, "checkin", lambda *_: pool_events.append("in"))

    for call in (
        reader.get(Book, 1),
        reader.execute(BOOK_TITLE, {"id": 2}),
        reader.scalar(COUNT_BOOKS),
        reader.scalars(select(Book).where(Book.id > 1)),
        reader.ping(),
    ):
        await call
        assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert pool_events[-2:] == ["out", "in"]
    assert pool_events == ["out", "in"] * 5


async def test_concurrent_reads_hold_a_connection_only_while_their_statement_runs(
    database: Database,
) -> None:
    reader = database.reader
    results = await asyncio.gather(
        *(reader.scalar(BOOK_TITLE, {"id": i % 3 + 1}) for i in range(50))
    )
    assert results == [f"book {i % 3 + 1}" for i in range(50)]
    assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# -- writes are refused ------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        insert(Book).values(id=9, title="nine"),
        update(Book).values(title="changed"),
        delete(Book),
    ],
    ids=["insert", "update", "delete"],
)
async def test_dml_constructs_are_refused(database: Database, statement: object) -> None:
    with pytest.raises(ReadOnlyError, match="refuses writes"):
        await database.reader.execute(statement)  # type: ignore[arg-type]
    assert await count_books(database) == 3


async def test_a_textual_insert_is_refused_by_the_database_and_no_row_appears(
    database: Database,
) -> None:
    with pytest.raises(ReadOnlyError, match="refuses writes"):
        await database.reader.execute(
            text("INSERT INTO tests__reader_books (id, title) VALUES (9, 'nine')")
        )
    assert await count_books(database) == 3
    # The connection that refused is healthy and back in the pool.
    assert await database.reader.scalar(COUNT_BOOKS) == 3


async def test_a_snapshot_refuses_writes(database: Database) -> None:
    with pytest.raises(ReadOnlyError):
        async with database.reader.snapshot() as session:
            session.add(Book(id=9, title="nine"))
            await session.flush()
    assert await count_books(database) == 3


# -- snapshots -----------------------------------------------------------------------------


async def test_a_snapshot_reads_repeatably_while_others_commit(database: Database) -> None:
    reader = database.reader
    async with reader.snapshot() as session:
        before = await session.scalar(select(func.count()).select_from(Book))
        async with database.uow_factory() as uow:
            uow.session.add(Book(id=4, title="book 4"))
            await uow.session.execute(update(Book).where(Book.id == 1).values(title="renamed"))
        after = await session.scalar(select(func.count()).select_from(Book))
        title = await session.scalar(select(Book.title).where(Book.id == 1))
    assert (before, after, title) == (3, 3, "book 1")
    # Outside the snapshot (on the same pooled connection) the new data is visible.
    assert await reader.scalar(COUNT_BOOKS) == 4
    assert await reader.scalar(BOOK_TITLE, {"id": 1}) == "renamed"
    assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_snapshot_gives_its_connection_back_when_the_block_raises(
    database: Database,
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with database.reader.snapshot() as session:
            await session.get(Book, 1)
            raise Boom
    assert database.reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await database.reader.scalar(COUNT_BOOKS) == 3


# -- engines and life cycle --------------------------------------------------------------


async def test_the_read_engine_is_autocommit_without_pre_ping_or_statement_hooks(
    database: Database,
) -> None:
    engine = database.reader.engine
    assert engine is not database.engine
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is not None
        assert engine.dialect.detect_autocommit_setting(raw.dbapi_connection) is True
    assert engine.pool._pre_ping is False
    # No connection-level event listener: statements run without any hook.
    assert engine.sync_engine._has_events is False


async def test_the_reader_is_built_once_and_disposed_with_the_database(
    db_settings: DatabaseSettings,
) -> None:
    database = Database(db_settings, metadata=ReaderModel.metadata)
    await database.start()
    reader = database.reader
    assert database.reader is reader
    assert await reader.ping() > 0
    await database.dispose()
    assert reader.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    await database.start()
    try:
        assert database.reader is not reader
    finally:
        await database.dispose()


async def test_in_memory_sqlite_reads_through_the_main_engine(tmp_path: Path) -> None:
    database = Database(sqlite_settings(Path(":memory:")), metadata=ReaderModel.metadata)
    await database.start()
    try:
        await database.create_all()
        async with database.uow_factory() as uow:
            uow.session.add(Book(id=1, title="only"))
        assert database.reader.engine.pool is database.engine.pool
        assert (await database.reader.get(Book, 1)).title == "only"  # type: ignore[union-attr]
        with pytest.raises(ReadOnlyError):
            await database.reader.execute(insert(Book).values(id=2, title="two"))
    finally:
        await database.dispose()


def test_create_read_engine_refuses_an_in_memory_sqlite_database() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        create_read_engine(DatabaseSettings(driver="sqlite+aiosqlite", database=":memory:"))


# -- failures ----------------------------------------------------------------------------


async def test_a_closed_port_raises_database_unavailable_for_every_call() -> None:
    settings = pg_settings("nowhere", port=free_port(), connect_timeout=1.0)
    reader = Reader.from_settings(settings)
    try:
        with pytest.raises(DatabaseUnavailable):
            await reader.get(Book, 1)
        with pytest.raises(DatabaseUnavailable):
            await reader.execute(BOOK_TITLE, {"id": 1})
        with pytest.raises(DatabaseUnavailable):
            await reader.ping(within=2.0)
        with pytest.raises(DatabaseUnavailable):
            async with reader.snapshot():
                pass  # pragma: no cover - never entered
        assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await reader.dispose()


async def test_ping_gives_up_within_its_timeout_when_the_read_pool_is_exhausted(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"read_pool_size": 1, "read_max_overflow": 0})
    reader = Reader.from_settings(settings)
    try:
        async with reader.engine.connect():  # hold the only connection
            started = asyncio.get_running_loop().time()
            with pytest.raises(DatabaseUnavailable, match=r"within 0\.2s"):
                await reader.ping(within=0.2)
            assert asyncio.get_running_loop().time() - started < 1.0
        assert await reader.ping() > 0
    finally:
        await reader.dispose()


async def admin_fetch(query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_killed_pooled_connection_is_retried_once_on_a_fresh_one(pg_database: str) -> None:
    reader = Reader.from_settings(pg_settings(pg_database))
    try:
        assert await reader.scalar(text("SELECT 1")) == 1
        killed = await admin_fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            pg_database,
        )
        assert killed
        assert await reader.scalar(text("SELECT 2")) == 2
        await admin_fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            pg_database,
        )
        assert await reader.ping() > 0  # the ping path retries once as well
        assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await reader.dispose()


@pytest.mark.postgres
async def test_a_cancelled_read_gives_its_connection_back(pg_database: str) -> None:
    reader = Reader.from_settings(pg_settings(pg_database))
    try:
        task = asyncio.create_task(reader.scalar(text("SELECT pg_sleep(5)")))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await reader.scalar(text("SELECT 3")) == 3
    finally:
        await reader.dispose()


@pytest.mark.postgres
async def test_read_connections_start_read_only_on_the_server(pg_database: str) -> None:
    reader = Reader.from_settings(pg_settings(pg_database))
    try:
        assert await reader.scalar(text("SHOW default_transaction_read_only")) == "on"
        async with reader.snapshot() as session:
            assert await session.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            assert await session.scalar(text("SHOW transaction_read_only")) == "on"
        # The pooled connection is back in its autocommit default afterwards.
        assert await reader.scalar(text("SHOW transaction_isolation")) == "read committed"
    finally:
        await reader.dispose()


# -- FastAPI -------------------------------------------------------------------------------


def reader_app(settings: DatabaseSettings) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(settings, metadata=ReaderModel.metadata))
    app.include_router(health_router(ready_timeout=1.0))

    @app.get("/books/{book_id}")
    async def book(book_id: int, reader: ReaderDep) -> dict[str, object]:
        found = await reader.get(Book, book_id)
        return {"title": found.title if found else None}

    @app.get("/titles/{book_id}")
    async def title(book_id: int, reader: ReaderDep) -> dict[str, object]:
        return {"title": await reader.scalar(BOOK_TITLE, {"id": book_id})}

    return app


async def test_reader_dep_serves_reads_and_health_ready_uses_the_read_pool(
    db_settings: DatabaseSettings,
) -> None:
    # pool_size 1: the main pool is exhausted below while /health/ready still answers.
    settings = db_settings.model_copy(update={"pool_size": 1, "max_overflow": 0})
    app = reader_app(settings)
    async with running(app) as client:
        database: Database = app.state.database
        async with database.uow_factory() as uow:
            uow.session.add(Book(id=7, title="seven"))
        assert (await client.get("/books/7")).json() == {"title": "seven"}
        assert (await client.get("/titles/7")).json() == {"title": "seven"}
        assert (await client.get("/books/8")).json() == {"title": None}
        async with database.engine.connect() as held:  # the main pool's only connection
            await held.execute(text("SELECT 1"))
            response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["database"]["latency_ms"] >= 0
        assert database.reader.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_health_ready_answers_503_with_a_reason_when_the_database_is_gone() -> None:
    app = FastAPI()
    app.include_router(health_router(ready_timeout=1.0))
    database = Database(pg_settings("nowhere", port=free_port(), connect_timeout=0.5))
    await database.start(wait=False)
    app.state.database = database
    try:
        async with running(app) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["database"]["status"] == "unavailable"
        assert response.json()["database"]["reason"]
    finally:
        await database.dispose()
