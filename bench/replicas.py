"""Read replicas: routing overhead per read, refresher cost, cost of a commit position.

``python -m bench.replicas`` starts its own throwaway primary and one streaming replica
(``tests/replicas/cluster.py``: initdb, ``pg_basebackup -R``, free ports), then measures:

1. **Routing overhead**: µs per read, the Reader with a replica set (routing over one caught-up
   replica) against the plain Reader on that same replica's read engine. Variants alternate,
   order reversed every other round; the median round counts. Target: <= 5 % more.
2. **Refresher**: wall µs of one refresh (primary + replica queried concurrently) and what that
   is per second at the default interval.
3. **Commit position**: round trips on the wire (``bench.wire.WireCounter`` in front of the
   primary) and µs per write (INSERT + COMMIT) with and without ``ReplicaSet.track``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from pydantic import SecretStr
from sqlalchemy import bindparam, text

from bench.wire import WireCounter
from db_manager import Database, DatabaseSettings
from db_manager.reader import Reader
from tests.faults.helpers import PostgresServer
from tests.replicas.cluster import Standby
from tests.support.postgres import PG_USER, pg_connect

READ = text("SELECT value FROM bench_rows WHERE id = :id").bindparams(bindparam("id"))
WRITE = text("INSERT INTO bench_rows (id, value) VALUES (:id, 'w')")
ROUNDS, READS, WRITES = 40, 300, 300
MAX_OVERHEAD = 0.05


def settings(primary_port: int, replica_port: int | None, **overrides: Any) -> DatabaseSettings:
    values: dict[str, Any] = {
        "driver": "postgresql+asyncpg",
        "host": "127.0.0.1",
        "port": primary_port,
        "user": PG_USER,
        "database": "postgres",
        "create_tables": False,
        "replicas": [] if replica_port is None else [SecretStr(f"127.0.0.1:{replica_port}")],
    }
    values.update(overrides)
    return DatabaseSettings(**values)


async def reads_per_us(reader: Reader, n: int) -> tuple[float, float]:
    """(wall, this process's CPU) µs per read."""
    started, cpu = time.perf_counter(), time.process_time()
    for index in range(n):
        await reader.scalar(READ, {"id": index % 100 + 1})
    return (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def routing(primary: PostgresServer, replica: Standby) -> bool:
    database = Database(settings(primary.port, replica.port, replica_pool_size=1))
    await database.start()
    routed = database.reader
    assert database.replicas is not None and len(database.replicas.usable) == 1
    # The same replica engine (same pool, same compiled cache): only the routing differs.
    plain = Reader(database.replicas.replicas[0].engine)
    try:
        await reads_per_us(plain, 200)
        await reads_per_us(routed, 200)
        samples: dict[str, list[tuple[float, float]]] = {"plain": [], "routed": []}
        for round_ in range(ROUNDS):
            order = [("plain", plain), ("routed", routed)]
            for name, reader in order if round_ % 2 == 0 else reversed(order):
                samples[name].append(await reads_per_us(reader, READS))
        served = await routed.scalar(text("SELECT inet_server_port()"))
        assert served == replica.port, "the routed reader did not read from the replica"
        replicas = database.replicas
        started = time.perf_counter()
        for _ in range(100_000):
            replicas.candidates(0)
        choose_ns = (time.perf_counter() - started) / 100_000 * 1e9
        refreshes_before, seconds_before = replicas.refreshes, replicas.refresh_seconds
        for _ in range(50):
            await replicas.refresh()
        refresh_us = (
            (replicas.refresh_seconds - seconds_before)
            / (replicas.refreshes - refreshes_before)
            * 1e6
        )
    finally:
        await database.dispose()
    # CPU of this process is what routing adds to; wall time also carries the server's and
    # the neighbours' noise on a shared host.
    wall = {name: statistics.median(w for w, _ in rounds) for name, rounds in samples.items()}
    cpu = {name: statistics.median(c for _, c in rounds) for name, rounds in samples.items()}
    ratio, wall_ratio = cpu["routed"] / cpu["plain"], wall["routed"] / wall["plain"]
    print(f"{ROUNDS} rounds of {READS} reads each, medians:")
    print(
        f"read, plain Reader on the replica:    {cpu['plain']:8.1f} µs CPU, "
        f"{wall['plain']:8.1f} µs wall"
    )
    print(
        f"read, Reader routing to the replica:  {cpu['routed']:8.1f} µs CPU, "
        f"{wall['routed']:8.1f} µs wall (ratio CPU {ratio:.3f}, wall {wall_ratio:.3f})"
    )
    print(f"choosing a replica (candidates()):    {choose_ns:8.0f} ns")
    interval = database.settings.replica_refresh_interval
    print(
        f"one refresh (primary + 1 replica):    {refresh_us:8.1f} µs wall; every {interval:g}s: "
        f"{2 * (1 / interval):.0f} one-round-trip queries/s per process"
    )
    ok = ratio <= 1 + MAX_OVERHEAD
    print(f"{'PASS' if ok else 'FAIL'} routing overhead {100 * (ratio - 1):+.1f} % CPU (<= 5 %)")
    return ok


async def commit_position(primary: PostgresServer, replica: Standby) -> bool:
    counter = WireCounter("127.0.0.1", primary.port)
    port = await counter.start()
    # A refresh interval of an hour: only the first refresh at start crosses the counter.
    database = Database(settings(port, replica.port, replica_refresh_interval=3600))
    await database.start()
    results: dict[str, tuple[float, float]] = {}
    next_id = 1000
    try:
        replicas = database.replicas
        assert replicas is not None
        for tracked in (False, True, False, True):
            counter.reset()
            started = time.perf_counter()
            for _ in range(WRITES):
                next_id += 1
                async with database.uow_factory() as uow:
                    if tracked:
                        ticket = replicas.track(uow)
                    await uow.session.execute(WRITE, {"id": next_id})
                if tracked:
                    assert ticket.position is not None
            us = (time.perf_counter() - started) / WRITES * 1e6
            results["tracked" if tracked else "plain"] = (counter.round_trips / WRITES, us)

        async def writer(first: int) -> None:
            for offset in range(20):
                async with database.uow_factory() as uow:
                    replicas.track(uow)
                    await uow.session.execute(WRITE, {"id": first + offset})

        before = replicas.positions.queries
        await asyncio.gather(*(writer(100_000 + 100 * index) for index in range(16)))
        shared = (replicas.positions.queries - before) / (16 * 20)
    finally:
        await database.dispose()
        await counter.stop()
    (plain_rt, plain_us), (tracked_rt, tracked_us) = results["plain"], results["tracked"]
    print(f"write, plain:                 {plain_rt:.2f} round trips, {plain_us:8.1f} µs")
    print(
        f"write, with commit position:  {tracked_rt:.2f} round trips, {tracked_us:8.1f} µs "
        f"(+{tracked_rt - plain_rt:.2f} round trip, +{tracked_us - plain_us:.1f} µs)"
    )
    print(f"16 concurrent writers: {shared:.2f} position queries per tracked write (shared)")
    ok = abs(tracked_rt - plain_rt - 1) < 0.01
    print(f"{'PASS' if ok else 'FAIL'} a commit position costs exactly one round trip")
    return ok


async def main() -> int:
    problem = PostgresServer.available()
    if problem is not None:
        print(f"FAIL cannot start a cluster: {problem}")
        return 1
    primary, replica = PostgresServer(), Standby()
    try:
        primary.init()
        primary.start()
        conn = await pg_connect(port=primary.port, database="postgres")
        try:
            await conn.execute("CREATE TABLE bench_rows (id int PRIMARY KEY, value text)")
            await conn.execute(
                "INSERT INTO bench_rows SELECT g, 'row ' || g FROM generate_series(1, 100) g"
            )
        finally:
            await conn.close()
        replica.clone(primary)
        replica.start()
        ok = await routing(primary, replica)
        ok = await commit_position(primary, replica) and ok
    finally:
        replica.destroy()
        primary.destroy()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
