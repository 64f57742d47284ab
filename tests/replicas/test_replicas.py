"""The read path over two streaming replicas: routing, lag, failures, read-your-writes.

One throwaway cluster per module (see ``conftest.py``): a primary, ``fast`` (no replay delay)
and ``slow`` (replay delayed by 500 ms). Which server answered a read is read from the read
itself (``inet_server_port()``), so the counts are the servers' own answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import insert, table, text

from db_manager import Database, DatabaseSettings
from db_manager.engine import ConnectionBudget
from db_manager.errors import ReadOnlyError
from db_manager.fastapi import database_lifespan, install_error_handlers
from db_manager.fastapi_replicas import (
    POSITION_HEADER,
    CommitPositionHeader,
    PositionReaderDep,
    TrackedUowDep,
    replica_status_router,
)
from db_manager.reader import Reader
from db_manager.replicas import ReplicaSet, parse_position
from tests.faults.helpers import in_process
from tests.support.postgres import PG_USER

from .cluster import Cluster

# slow: the module starts a primary and two replicas (12-25 s on a shared host).
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVER_PORT = text("SELECT inet_server_port()")
INSERT_ROW = text("INSERT INTO rep_rows (value) VALUES (:value) RETURNING id")
READ_ROW = text("SELECT (SELECT value FROM rep_rows WHERE id = :id), inet_server_port()")


def replica_settings(cluster: Cluster, **overrides: Any) -> DatabaseSettings:
    values: dict[str, Any] = {
        "driver": "postgresql+asyncpg",
        "host": "127.0.0.1",
        "port": cluster.primary.port,
        "user": PG_USER,
        "database": "postgres",
        "create_tables": False,
        "connect_timeout": 2.0,
        "replicas": [
            SecretStr(f"127.0.0.1:{cluster.fast.port}"),
            SecretStr(f"127.0.0.1:{cluster.slow.port}"),
        ],
        "replica_refresh_interval": 0.05,
    }
    values.update(overrides)
    return DatabaseSettings(**values)


async def eventually(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def replicas_of(database: Database[Any]) -> ReplicaSet:
    replicas = database.replicas
    assert replicas is not None
    return replicas


def state(database: Database[Any], name: str) -> str:
    return next(r.state for r in replicas_of(database).replicas if r.name == name)


def make_app(settings: DatabaseSettings) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(settings))
    app.add_middleware(CommitPositionHeader)
    install_error_handlers(app)
    app.include_router(replica_status_router())

    @app.post("/rows", status_code=201)
    async def create(uow: TrackedUowDep) -> dict[str, int]:
        row_id = (await uow.session.execute(INSERT_ROW, {"value": "written"})).scalar_one()
        return {"id": int(row_id)}

    @app.get("/rows/{row_id}")
    async def read(row_id: int, reader: PositionReaderDep) -> dict[str, Any]:
        row = (await reader.execute(READ_ROW, {"id": row_id})).one()
        value, port = tuple(row)
        return {"found": value is not None, "port": port}

    return app


async def test_reads_with_the_position_of_the_write_see_it(
    cluster: Cluster, rows_table: str
) -> None:
    app = make_app(replica_settings(cluster))
    replica_ports = {cluster.fast.port, cluster.slow.port}
    async with in_process(app) as client:
        database: Database[Any] = app.state.database
        seen, by_port, on_replica_once_replayed = 0, Counter[int](), 0
        for attempt in range(100):
            posted = await client.post("/rows")
            assert posted.status_code == 201
            position = posted.headers[POSITION_HEADER]
            headers = {POSITION_HEADER: position}
            got = await client.get(f"/rows/{posted.json()['id']}", headers=headers)
            assert got.status_code == 200
            seen += got.json()["found"]
            by_port[got.json()["port"]] += 1
            if attempt % 10 == 0:
                # Once a replica is known to have replayed it, a replica serves the read.
                wanted = parse_position(position)
                await eventually(lambda: replicas_of(database).replayed(wanted))  # noqa: B023
                again = await client.get(f"/rows/{posted.json()['id']}", headers=headers)
                assert again.json()["found"]
                assert again.json()["port"] in replica_ports
                on_replica_once_replayed += 1
        stale, stale_by_port = 0, Counter[int]()
        for _ in range(100):
            posted = await client.post("/rows")
            got = await client.get(f"/rows/{posted.json()['id']}")
            if not got.json()["found"]:
                stale += 1
                stale_by_port[got.json()["port"]] += 1
        status = (await client.get("/health/replicas")).json()
    print(
        f"\nwith the position: {seen}/100 saw their write; served by "
        f"primary={by_port[cluster.primary.port]} fast={by_port[cluster.fast.port]} "
        f"slow={by_port[cluster.slow.port]}; {on_replica_once_replayed}/10 re-reads after replay "
        f"on a replica\nwithout it: {stale}/100 stale reads (slow={stale_by_port[cluster.slow.port]}"
        f", fast={stale_by_port[cluster.fast.port]})"
    )
    assert seen == 100
    assert {r["replica"] for r in status["replicas"]} == {
        f"127.0.0.1:{cluster.fast.port}",
        f"127.0.0.1:{cluster.slow.port}",
    }
    assert {r["state"] for r in status["replicas"]} <= {"ok", "lagging"}
    assert all(r["lag_seconds"] is not None and r["error"] is None for r in status["replicas"])


async def test_a_malformed_position_is_a_400_and_no_replicas_means_no_header(
    cluster: Cluster, rows_table: str
) -> None:
    async with in_process(make_app(replica_settings(cluster))) as client:
        bad = await client.get("/rows/1", headers={POSITION_HEADER: "not-a-position"})
    assert bad.status_code == 400
    assert "X-DB-Position" in bad.json()["detail"]
    async with in_process(make_app(replica_settings(cluster, replicas=[]))) as client:
        posted = await client.post("/rows")
        assert posted.status_code == 201
        assert POSITION_HEADER not in posted.headers
        got = await client.get(f"/rows/{posted.json()['id']}", headers={"X-DB-Position": "0/1"})
        assert got.json() == {"found": True, "port": cluster.primary.port}
        assert app_replicas_empty((await client.get("/health/replicas")).json())


def app_replicas_empty(body: dict[str, Any]) -> bool:
    return body == {"status": "ok", "replicas": []}


async def test_the_position_is_available_to_code_after_an_explicit_commit(
    cluster: Cluster, rows_table: str
) -> None:
    database = Database(replica_settings(cluster))
    await database.start()
    try:
        async with database.uow_factory() as uow:
            ticket = replicas_of(database).track(uow)
            row_id = (await uow.session.execute(INSERT_ROW, {"value": "bot"})).scalar_one()
            assert ticket.position is None
            await uow.commit()
            assert ticket.position is not None
            first = ticket.position
            value, _port = (
                await database.reader.at(ticket.position).execute(READ_ROW, {"id": row_id})
            ).one()
            assert value == "bot"
            await uow.session.execute(INSERT_ROW, {"value": "second"})
        assert ticket.position is not None and ticket.position > first
    finally:
        await database.dispose()


async def test_reads_spread_over_both_replicas_and_not_the_primary(cluster: Cluster) -> None:
    database = Database(replica_settings(cluster))
    await database.start()
    try:
        await eventually(lambda: len(replicas_of(database).usable) == 2)
        ports = Counter([await database.reader.scalar(SERVER_PORT) for _ in range(200)])
        async with database.reader.snapshot() as session:
            snapshot_port = await session.scalar(SERVER_PORT)
    finally:
        await database.dispose()
    print(f"\nreads: {dict(ports)} (primary {cluster.primary.port})")
    assert ports[cluster.primary.port] == 0
    assert ports[cluster.fast.port] > 50 and ports[cluster.slow.port] > 50
    assert snapshot_port in (cluster.fast.port, cluster.slow.port)


async def test_the_connection_budget_counts_the_replica_pools(cluster: Cluster) -> None:
    settings = replica_settings(cluster, replica_pool_size=3, replica_max_overflow=1)
    budget = ConnectionBudget.of(settings)
    assert budget.replicas == 2 * 4
    assert budget.total == settings.pool_size + settings.max_overflow + 5 + 8
    assert "secret" not in repr(replica_settings(cluster, replicas=[SecretStr("x:1")]))


async def test_a_write_through_the_reader_on_a_replica_is_refused(
    cluster: Cluster, rows_table: str
) -> None:
    database = Database(replica_settings(cluster))
    await database.start()
    try:
        reader = database.reader
        await eventually(lambda: len(replicas_of(database).usable) == 2)
        with pytest.raises(ReadOnlyError):
            await reader.execute(text("INSERT INTO rep_rows (value) VALUES ('no')"))
        with pytest.raises(ReadOnlyError):
            await reader.execute(insert(table("rep_rows")).values(value="no"))
        with pytest.raises(ReadOnlyError):
            async with reader.snapshot() as session:
                await session.execute(text("INSERT INTO rep_rows (value) VALUES ('no')"))
        # The refusals came from replicas: they are still usable, and the reader still reads.
        assert len(replicas_of(database).usable) == 2
        assert await reader.scalar(SERVER_PORT) in (cluster.fast.port, cluster.slow.port)
    finally:
        await database.dispose()


async def test_a_replica_lagging_beyond_the_maximum_is_skipped_until_it_catches_up(
    cluster: Cluster, rows_table: str
) -> None:
    slow = f"127.0.0.1:{cluster.slow.port}"
    database = Database(replica_settings(cluster, replica_max_lag=1.0))
    await database.start()
    await cluster.slow.set_apply_delay(3000)
    try:
        await eventually(lambda: len(replicas_of(database).usable) == 2)
        ports_while_lagging: Counter[int] = Counter()
        deadline = time.monotonic() + 10
        while state(database, slow) != "lagging":
            assert time.monotonic() < deadline, "the slow replica never counted as lagging"
            async with database.uow_factory() as uow:
                await uow.session.execute(INSERT_ROW, {"value": "lag"})
            await asyncio.sleep(0.02)
        for _ in range(50):
            async with database.uow_factory() as uow:
                await uow.session.execute(INSERT_ROW, {"value": "lag"})
            ports_while_lagging[await database.reader.scalar(SERVER_PORT)] += 1
        lag = next(r for r in replicas_of(database).status() if r["replica"] == slow)
        await eventually(lambda: state(database, slow) == "ok", timeout=10)
        ports_after = Counter([await database.reader.scalar(SERVER_PORT) for _ in range(40)])
    finally:
        await cluster.slow.set_apply_delay(cluster.delay_ms)
        await database.dispose()
    print(f"\nwhile lagging ({lag}): {dict(ports_while_lagging)}; after: {dict(ports_after)}")
    assert lag["lag_seconds"] > 1.0 and not lag["usable"]
    assert ports_while_lagging[cluster.slow.port] == 0
    assert ports_while_lagging[cluster.fast.port] == 50
    assert ports_after[cluster.slow.port] > 0


async def _read_under_load(reader: Reader, stop: asyncio.Event, ports: Counter[int]) -> list[str]:
    failures: list[str] = []
    while not stop.is_set():
        try:
            ports[await reader.scalar(SERVER_PORT)] += 1
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(0)
    return failures


async def test_stopped_replicas_fail_no_read_and_are_used_again_when_back(
    cluster: Cluster,
) -> None:
    fast = f"127.0.0.1:{cluster.fast.port}"
    database = Database(replica_settings(cluster))
    await database.start()
    try:
        await eventually(lambda: len(replicas_of(database).usable) == 2)
        stop, ports = asyncio.Event(), Counter[int]()
        load = [
            asyncio.create_task(_read_under_load(database.reader, stop, ports)) for _ in range(4)
        ]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.fast.stop, "fast")
        ports.clear()
        await asyncio.sleep(0.5)
        while_down = dict(ports)
        await asyncio.to_thread(cluster.fast.start)
        await eventually(lambda: state(database, fast) == "ok")
        ports.clear()
        await asyncio.sleep(0.5)
        after_back = dict(ports)
        await asyncio.to_thread(cluster.fast.stop, "fast")
        await asyncio.to_thread(cluster.slow.stop, "fast")
        ports.clear()
        await asyncio.sleep(0.5)
        both_down = dict(ports)
        stop.set()
        failures = [failure for task in load for failure in await task]
    finally:
        for server in (cluster.fast, cluster.slow):
            if not server.running():
                await asyncio.to_thread(server.start)
        await database.dispose()
    print(f"\none down: {while_down}; back: {after_back}; both down: {both_down}")
    assert failures == []
    assert while_down.get(cluster.fast.port, 0) == 0 and while_down[cluster.slow.port] > 0
    assert after_back[cluster.fast.port] > 0
    assert set(both_down) == {cluster.primary.port}


async def test_concurrent_commits_share_position_queries_and_each_sees_its_write(
    cluster: Cluster, rows_table: str
) -> None:
    database = Database(replica_settings(cluster, pool_size=20))
    await database.start()
    replicas = replicas_of(database)

    async def write() -> tuple[int, int]:
        async with database.uow_factory() as uow:
            ticket = replicas.track(uow)
            row_id = (await uow.session.execute(INSERT_ROW, {"value": "many"})).scalar_one()
        assert ticket.position is not None
        return int(row_id), ticket.position

    try:
        before = replicas.positions.queries
        written = await asyncio.gather(*(write() for _ in range(20)))
        queries = replicas.positions.queries - before
        for row_id, position in written:
            row = (await database.reader.at(position).execute(READ_ROW, {"id": row_id})).one()
            value = row[0]
            assert value == "many"
    finally:
        await database.dispose()
    print(f"\n20 concurrent commits: {queries} position queries")
    assert 1 <= queries < 20
