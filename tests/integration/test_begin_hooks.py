"""Begin hooks of a UnitOfWork run through one class-level listener, not one per session.

A listener registered on each session costs an event-registry entry per unit of work and
ties the session into a reference cycle, so every webhook update left garbage for the cyclic
collector; these tests pin the cheaper wiring and that the behaviour stays the same.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db_manager import Database, DatabaseSettings, UnitOfWork


@pytest.fixture
async def database(db_settings: DatabaseSettings) -> AsyncIterator[Database]:
    database = Database(db_settings)
    await database.start()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_hooks_run_once_per_transaction_for_factory_sessions(database: Database) -> None:
    calls: list[Connection] = []
    async with database.uow_factory() as uow:
        uow.on_begin(calls.append)
        await uow.session.execute(text("SELECT 1"))
        await uow.session.execute(text("SELECT 2"))
    assert len(calls) == 1


async def test_hooks_registered_after_the_session_exists_still_run(database: Database) -> None:
    calls: list[Connection] = []
    async with database.uow_factory() as uow:
        session = uow.session
        uow.on_begin(calls.append)
        await session.execute(text("SELECT 1"))
    assert len(calls) == 1


async def test_a_unit_of_work_with_hooks_leaves_no_reference_cycle(
    database: Database, no_cyclic_gc: None
) -> None:
    async with database.uow_factory() as uow:
        uow.on_begin(lambda connection: None)
        await uow.session.execute(text("SELECT 1"))
        sync_session = weakref.ref(uow.session.sync_session)
    del uow
    assert sync_session() is None  # freed by reference counting, no collector needed


async def test_a_callers_sessionmaker_still_gets_its_hooks(
    db_settings: DatabaseSettings,
) -> None:
    database = Database(db_settings)
    await database.start()
    try:
        plain = async_sessionmaker(database.engine, class_=AsyncSession)
        calls: list[Connection] = []
        async with UnitOfWork(plain) as uow:
            uow.on_begin(calls.append)
            await uow.session.execute(text("SELECT 1"))
        assert len(calls) == 1
    finally:
        await database.dispose()
