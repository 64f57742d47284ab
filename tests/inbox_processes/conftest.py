"""Fixtures of the inbox process tests: a database with the tables, child processes that are
always killed at the end, an observer connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from db_manager import DatabaseSettings

from .helpers import ForkServer, InboxMode, InboxProcess, Observer, app_database, create_tables


@pytest.fixture
async def inbox_db(pg_database: str) -> str:
    """A fresh database on the shared server with the inbox and test tables."""
    await create_tables(app_database(pg_database))
    return pg_database


@pytest.fixture
async def observer(inbox_db: str) -> AsyncIterator[Observer]:
    watcher = await Observer.open(inbox_db)
    try:
        yield watcher
    finally:
        await watcher.close()


@pytest.fixture(scope="session")
def forkserver() -> Iterator[ForkServer]:
    """One interpreter that has imported the app and forks the uvicorn children."""
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def processes(forkserver: ForkServer) -> Iterator[Callable[..., InboxProcess]]:
    """``make(database_settings, bot_settings_dict, slow_cap=None)``: a child, not started
    yet; every child made is killed (SIGKILL) at the end of the test whatever happened."""
    made: list[InboxProcess] = []

    def make(database: DatabaseSettings, bot: dict[str, Any], **options: Any) -> InboxProcess:
        process = InboxProcess(database, bot, forkserver=forkserver, **options)
        made.append(process)
        return process

    try:
        yield make
    finally:
        for process in made:
            process.cleanup()


@pytest.fixture
def inbox_mode(inbox_db: str, processes: Callable[..., InboxProcess]) -> InboxMode:
    """``await inbox_mode.start(count)``: processes in inbox mode (4 workers each) on
    ``inbox_db``, all with the same settings (``inbox_mode.database``)."""
    return InboxMode(app_database(inbox_db), processes)
