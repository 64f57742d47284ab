"""``db_manager__telegram_updates`` without the webhook: the key is (bot, update), the row joins
the caller's transaction, nothing is written for a unit of work that never touches the
database, and old rows can be pruned. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select, text

from db_manager import Database, DatabaseSettings, UnitOfWork
from db_manager.telegram.store import (
    DuplicateUpdate,
    TelegramUpdate,
    deduplicate_update,
    prune_updates,
)

DB = Database[UnitOfWork]


@pytest.fixture
async def database(db_settings: DatabaseSettings) -> AsyncIterator[Database[UnitOfWork]]:
    database = Database(db_settings)
    await database.start()
    try:
        await database.create_all()
        yield database
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


async def recorded(database: DB) -> list[tuple[int, int]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            select(TelegramUpdate.bot_id, TelegramUpdate.update_id).order_by(
                TelegramUpdate.bot_id, TelegramUpdate.update_id
            )
        )
        return [(int(bot_id), int(update_id)) for bot_id, update_id in rows]


async def apply(database: DB, bot_id: int, update_id: int) -> bool:
    """Run a unit of work that uses the database; False if it was a duplicate."""
    try:
        async with database.uow_factory() as uow:
            deduplicate_update(uow, bot_id, update_id)
            await uow.session.execute(text("SELECT 1"))
    except DuplicateUpdate:
        return False
    return True


async def test_the_key_is_bot_and_update(database: DB) -> None:
    assert await apply(database, 1, 10) is True
    assert await apply(database, 2, 10) is True  # another bot's update 10
    assert await apply(database, 1, 11) is True
    assert await apply(database, 1, 10) is False
    assert await recorded(database) == [(1, 10), (1, 11), (2, 10)]


async def test_the_row_rolls_back_with_the_work(database: DB) -> None:
    with pytest.raises(RuntimeError):
        async with database.uow_factory() as uow:
            deduplicate_update(uow, 1, 20)
            await uow.session.execute(text("SELECT 1"))
            raise RuntimeError("handler failed")
    assert await recorded(database) == []
    assert await apply(database, 1, 20) is True


async def test_nothing_is_written_when_the_database_is_not_used(
    database: DB,
) -> None:
    async with database.uow_factory() as uow:
        record = deduplicate_update(uow, 1, 30)
    assert record.duplicate is False
    assert await recorded(database) == []


async def test_the_row_is_written_once_across_explicit_commits(
    database: DB,
) -> None:
    """A handler that commits mid-way starts a second transaction: it must not record the
    update again (which would look like a duplicate of itself)."""
    async with database.uow_factory() as uow:
        deduplicate_update(uow, 1, 40)
        await uow.session.execute(text("SELECT 1"))
        await uow.commit()
        await uow.session.execute(text("SELECT 2"))
    assert await recorded(database) == [(1, 40)]


async def test_prune_deletes_only_old_rows(database: DB) -> None:
    now = dt.datetime.now(dt.UTC)
    async with database.engine.begin() as conn:
        await conn.execute(
            insert(TelegramUpdate),
            [
                {"bot_id": 1, "update_id": 1, "received_at": now - dt.timedelta(days=10)},
                {"bot_id": 1, "update_id": 2, "received_at": now - dt.timedelta(days=4)},
                {"bot_id": 1, "update_id": 3, "received_at": now - dt.timedelta(hours=1)},
            ],
        )
    async with database.uow_factory() as uow:
        deleted = await prune_updates(uow, older_than=dt.timedelta(days=3))
    assert deleted == 2
    assert await recorded(database) == [(1, 3)]
