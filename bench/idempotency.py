"""``python -m bench.idempotency``: what an ``Idempotency-Key`` costs a write (issue 16, point 5).

One write route (``POST /items/{id}/bump``: ``UPDATE ... RETURNING``) on db_manager's FastAPI
adapter with :class:`~db_manager.fastapi_idempotency.IdempotentRoute`, called in-process
three ways: without a key, with a new key each time, and repeating a committed key (replay).

* **Counting pass** - through :class:`~bench.wire.WireCounter` (a proxy that parses the
  client's side of the PostgreSQL protocol): statements (``Execute`` and simple ``Query``,
  BEGIN and COMMIT included) and round trips per request; transactions per request from the
  engine's ``begin`` event. Target: a key adds at most two statements and no transaction.
* **Timing pass** - straight to the server: microseconds per request, the variants taking
  turns (order reversed every other round), the median of the rounds, and the ratio against
  the request without a key measured in the same run.

The run creates its own database (``BENCH_PG_*``, as ``python -m bench``) and drops it.
Options: ``--n`` requests per variant and round (default 300), ``--rounds`` (default 5).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import ITEMS, ROWS, Target, bench_database
from bench.inprocess import AsgiClient
from bench.wire import WireCounter
from db_manager import UnitOfWork
from db_manager.fastapi import database_lifespan, install_error_handlers
from db_manager.fastapi_idempotency import IdempotentRoute, idempotent_uow
from db_manager.idempotency import IdempotencyKey

VARIANTS = ("no key", "new key", "replay")
MAX_EXTRA_STATEMENTS = 2

BenchIdemUowDep = Annotated[UnitOfWork, Depends(idempotent_uow(), scope="function")]


def build_app(target: Target) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(target.settings()))
    install_error_handlers(app)
    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/items/{item_id}/bump")
    async def bump(item_id: int, uow: BenchIdemUowDep) -> dict[str, int]:
        stmt = update(ITEMS).where(ITEMS.c.id == item_id).values(counter=ITEMS.c.counter + 1)
        counter = await uow.session.scalar(stmt.returning(ITEMS.c.counter))
        return {"id": item_id, "counter": int(counter or 0)}

    app.include_router(router)
    return app


Request = tuple[str, list[tuple[bytes, bytes]]]


def requests(variant: str, round_id: int) -> Callable[[int], Request]:
    """The ``i``-th request of a variant: a path and its headers."""

    def make(i: int) -> Request:
        path = f"/items/{i % ROWS + 1}/bump"
        if variant == "no key":
            return path, []
        if variant == "new key":
            return path, [(b"idempotency-key", f"r{round_id}-{i}".encode())]
        return "/items/1/bump", [(b"idempotency-key", b"replayed-key")]

    return make


@dataclass(frozen=True)
class Count:
    statements: float
    round_trips: float
    transactions: float


async def _send(client: AsgiClient, request: Request) -> None:
    path, headers = request
    status = await client.request("POST", path, b"", headers)
    if status != 200:
        raise RuntimeError(f"POST {path} answered {status}")


async def count_pass(target: Target, n: int) -> dict[str, Count]:
    counter = WireCounter(target.host, target.port)
    port = await counter.start()
    app = build_app(target.with_port(port))
    client = AsgiClient(app)
    await client.start()
    begins = [0]

    def on_begin(_conn: Any) -> None:
        begins[0] += 1

    event.listen(app.state.engine.sync_engine, "begin", on_begin)
    counts: dict[str, Count] = {}
    try:
        await _send(client, requests("replay", 0)(0))  # the key a replay repeats
        for variant in VARIANTS:
            make = requests(variant, 1000)
            for i in range(20):  # warm-up: connections, prepared statements
                await _send(client, make(n + i))
            counter.reset()
            begins[0] = 0
            for i in range(n):
                await _send(client, make(i))
            counts[variant] = Count(counter.statements / n, counter.round_trips / n, begins[0] / n)
    finally:
        await client.stop()
        await counter.stop()
    return counts


async def timing_pass(target: Target, n: int, rounds: int) -> dict[str, float]:
    """Median over the rounds of the microseconds per request, per variant."""
    client = AsgiClient(build_app(target))
    await client.start()
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    try:
        await _send(client, requests("replay", 0)(0))
        for round_id in range(rounds + 1):  # round 0 warms up and is not kept
            order = VARIANTS if round_id % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                make = requests(variant, round_id)
                started = time.perf_counter()
                for i in range(n):
                    await _send(client, make(i))
                if round_id:
                    samples[variant].append((time.perf_counter() - started) / n * 1e6)
    finally:
        await client.stop()
    return {variant: statistics.median(values) for variant, values in samples.items()}


def report(counts: dict[str, Count], timings: dict[str, float]) -> bool:
    print("variant      statements  round trips  transactions  us/request  ratio")
    base = timings["no key"]
    for variant in VARIANTS:
        c = counts[variant]
        print(
            f"{variant:<12} {c.statements:>10.2f}  {c.round_trips:>11.2f}  {c.transactions:>12.2f}"
            f"  {timings[variant]:>10.0f}  {timings[variant] / base:>5.2f}"
        )
    extra = counts["new key"].statements - counts["no key"].statements
    extra_tx = counts["new key"].transactions - counts["no key"].transactions
    passed = extra <= MAX_EXTRA_STATEMENTS and extra_tx == 0
    print(
        f"{'PASS' if passed else 'FAIL'}: a key adds {extra:.2f} statements "
        f"(at most {MAX_EXTRA_STATEMENTS}) and {extra_tx:.2f} transactions (none), "
        f"{timings['new key'] - base:+.0f} us per request ({timings['new key'] / base:.2f}x)"
    )
    return passed


async def create_key_table(target: Target) -> None:
    engine = create_async_engine(target.url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(IdempotencyKey.__table__.create)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def run(n: int, rounds: int) -> bool:
    async with bench_database(Target(pool_size=2)) as target:
        await create_key_table(target)
        counts = await count_pass(target, n)
        timings = await timing_pass(target, n, rounds)
    return report(counts, timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idempotency")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return 0 if asyncio.run(run(args.n, args.rounds)) else 1


if __name__ == "__main__":
    sys.exit(main())
