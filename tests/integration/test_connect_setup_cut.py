"""A connection lost during SQLAlchemy's connect-time set-up is a transient failure (503).

SQLAlchemy's asyncpg dialect registers its JSON codecs on every new connection on the raw
asyncpg connection, outside its error wrapping. A server that terminates the backend just
after the login (a shutdown, an operator's ``pg_terminate_backend``) makes asyncpg raise its
own ``InterfaceError: connection is closed`` there, as is. The PostgreSQL restart fault test
met it as a 500 on the read path.

Here the server terminates each armed new connection right after its login, before the
dialect's set-up runs (a ``connect`` listener inserted ahead of the dialect's, which asks
PostgreSQL to terminate that backend and waits until asyncpg has seen it go): the unit of
work, the read path, both pings and a FastAPI route see ``DatabaseUnavailable`` (503),
nothing stays checked out, and the next connection works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

from db_manager import Database, DatabaseUnavailable, UnitOfWork
from db_manager.fastapi import ReaderDep, database_lifespan, install_error_handlers
from tests.support.asgi import running
from tests.support.postgres import pg_connect, pg_settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.postgres


class TerminateAfterLogin:
    """On the next ``armed`` new connections of the engines it watches, PostgreSQL
    terminates the backend as soon as the login is done."""

    def __init__(self) -> None:
        self.armed = 0
        self.terminated: list[int] = []

    def watch(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine.pool, "connect", self._connected, insert=True)

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        if self.armed == 0:
            return
        self.armed -= 1
        driver = dbapi_connection.driver_connection
        pid = driver.get_server_pid()
        await_(self._terminate(driver, pid))
        self.terminated.append(pid)

    @staticmethod
    async def _terminate(driver: Any, pid: int) -> None:
        admin = await pg_connect()
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

        async def closed() -> bool:  # asyncpg has seen the server's FATAL and the socket close
            return bool(driver.is_closed())

        assert await wait_for(closed, timeout=5, interval=0.01), "the connection looks open"


@pytest.fixture
async def terminate(pg_available: None) -> TerminateAfterLogin:
    return TerminateAfterLogin()


@pytest.fixture
async def database(
    pg_database: str, terminate: TerminateAfterLogin
) -> AsyncIterator[Database[UnitOfWork]]:
    started: Database[UnitOfWork] = Database(pg_settings(pg_database))
    await started.start()
    terminate.watch(started.engine)
    terminate.watch(started.reader.engine)
    try:
        yield started
    finally:
        await started.dispose()


async def _select_in_unit_of_work(database: Database[UnitOfWork]) -> object:
    async with database.uow_factory() as uow:
        return await uow.session.scalar(text("SELECT 1"))


async def _read(database: Database[UnitOfWork]) -> object:
    return await database.reader.scalar(select(1))


async def _reader_ping(database: Database[UnitOfWork]) -> object:
    return await database.reader.ping(within=5)


async def _ping(database: Database[UnitOfWork]) -> object:
    return await database.ping(within=5)


OPERATIONS: dict[str, Callable[[Database[UnitOfWork]], Awaitable[object]]] = {
    "unit of work": _select_in_unit_of_work,
    "read path": _read,
    "read-path ping": _reader_ping,
    "ping": _ping,
}


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_connection_cut_during_its_set_up_is_database_unavailable(
    database: Database[UnitOfWork], terminate: TerminateAfterLogin, name: str
) -> None:
    operation = OPERATIONS[name]
    await operation(database)  # the dialect is initialized on a good connection
    await database.engine.dispose()
    await database.reader.engine.dispose()
    terminate.armed = 1

    with pytest.raises(DatabaseUnavailable) as raised:
        await operation(database)

    assert len(terminate.terminated) == 1
    assert "connection" in str(raised.value)
    for engine in (database.engine, database.reader.engine):
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # The next connection is a good one.
    assert terminate.armed == 0
    await operation(database)


async def test_a_route_answers_503_when_its_connection_is_cut_during_set_up(
    pg_database: str, terminate: TerminateAfterLogin
) -> None:
    app = FastAPI(lifespan=database_lifespan(pg_settings(pg_database)))
    install_error_handlers(app)

    @app.get("/one")
    async def one(reader: ReaderDep) -> dict[str, int]:
        return {"one": int(await reader.scalar(select(1)))}

    async with running(app) as client:
        assert (await client.get("/one")).json() == {"one": 1}
        database: Database[UnitOfWork] = app.state.database
        await database.reader.engine.dispose()
        terminate.watch(database.reader.engine)
        terminate.armed = 1

        answer: httpx.Response = await client.get("/one")

        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"] == "database_unavailable"
        assert len(terminate.terminated) == 1
        assert (await client.get("/one")).json() == {"one": 1}
