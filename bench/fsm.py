"""``python -m bench.fsm``: updates/s of an FSM handler with SqlAlchemyStorage, RedisStorage
and MemoryStorage, side by side in one run, with a PASS/FAIL line (target: ours >= 0.8x Redis).

Every variant runs the same Dispatcher set-up (db_manager's middleware, one PostgreSQL
database) fed in-process with ``feed_update`` by ``--concurrency`` tasks over ``--users``
users; only the storage differs. Two handlers:

* ``fsm+row`` (the target): reads its FSM data, ``update_data(counter=n + 1)``, and bumps a
  row, the case the storage exists for (with ours the state commits with the row);
* ``fsm only``: the same without the row; Redis and Memory then never open a transaction,
  ours does (the state lives in the database), so this shows the floor of that cost.

Variants alternate order every round; the figure is the median round. Redis on
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) under a random key prefix, removed
at the end. Options: ``--quick``, ``--seconds``, ``--rounds``, ``--concurrency``, ``--users``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from aiogram import Bot, Dispatcher, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import Message, Update
from sqlalchemy import Table, bindparam, update

from bench.common import BOT_TOKEN, ROWS, Item, Target, bench_database
from db_manager import Base, Database, UnitOfWork
from db_manager.telegram import setup_dispatcher
from db_manager.telegram.fsm import FsmRecord, SqlAlchemyStorage

VARIANTS = ("sqlalchemy", "redis", "memory")
SCENARIOS = ("fsm+row", "fsm only")
TARGET_RATIO = 0.8
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BUMP = update(Item).where(Item.id == bindparam("item")).values(counter=Item.counter + 1)


def build_router(*, write: bool) -> Router:
    router = Router()

    @router.message()
    async def step(message: Message, state: FSMContext, uow: UnitOfWork) -> None:
        counter = await state.get_value("counter", 0)
        await state.update_data(counter=counter + 1)
        if write:
            user_id = message.from_user.id if message.from_user else 0
            await uow.session.execute(BUMP, {"item": user_id % ROWS + 1})

    return router


def storage_for(variant: str, prefix: str) -> BaseStorage:
    if variant == "sqlalchemy":
        return SqlAlchemyStorage()
    if variant == "redis":
        builder = DefaultKeyBuilder(prefix=prefix, with_bot_id=True)
        return RedisStorage.from_url(REDIS_URL, key_builder=builder)
    return MemoryStorage()


def message_update(update_id: int, user_id: int) -> dict[str, Any]:
    sender = {"id": user_id, "is_bot": False, "first_name": "Ada"}
    chat = {"id": user_id, "type": "private", "first_name": "Ada"}
    message = {"message_id": update_id, "date": 1735689600, "chat": chat, "from": sender}
    return {"update_id": update_id, "message": {**message, "text": "next"}}


@dataclass
class Results:
    series: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def median(self, scenario: str, variant: str) -> float:
        return statistics.median(self.series[(scenario, variant)])

    def ratio(self, scenario: str) -> float:
        return self.median(scenario, "sqlalchemy") / self.median(scenario, "redis")


async def _drive(
    dp: Dispatcher,
    bot: Bot,
    ids: itertools.count[int],
    *,
    seconds: float,
    concurrency: int,
    users: int,
) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            update_id = next(ids)
            raw = message_update(update_id, 10_000 + update_id % users)
            await dp.feed_update(bot, Update.model_validate(raw, context={"bot": bot}))
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


@asynccontextmanager
async def _dispatchers(
    database: Database[UnitOfWork], scenario: str, prefix: str
) -> AsyncIterator[dict[str, Dispatcher]]:
    dispatchers: dict[str, Dispatcher] = {}
    for variant in VARIANTS:
        dp = Dispatcher(storage=storage_for(variant, f"{prefix}{scenario}"))
        dp.include_router(build_router(write=scenario == "fsm+row"))
        setup_dispatcher(dp, database.uow_factory)
        dispatchers[variant] = dp
    try:
        yield dispatchers
    finally:
        for dp in dispatchers.values():
            await dp.storage.close()


async def measure(
    target: Target, *, seconds: float, rounds: int, concurrency: int, users: int
) -> Results:
    """Every scenario x variant for ``rounds`` rounds of ``seconds`` each (after a warm-up)."""
    database: Database[UnitOfWork] = Database(target.settings(pool_size=concurrency))
    await database.start()
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=[cast(Table, FsmRecord.__table__)])
    bot = Bot(BOT_TOKEN)
    ids = itertools.count(1)
    prefix = f"dbmbench{uuid.uuid4().hex[:8]}"
    results = Results()
    try:
        for scenario in SCENARIOS:
            async with _dispatchers(database, scenario, prefix) as dispatchers:
                for dp in dispatchers.values():  # warm-up: pools, prepared statements, rows
                    await _drive(
                        dp,
                        bot,
                        ids,
                        seconds=min(1.0, seconds),
                        concurrency=concurrency,
                        users=users,
                    )
                for round_no in range(rounds):
                    order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]
                    for variant in order:
                        n = await _drive(
                            dispatchers[variant],
                            bot,
                            ids,
                            seconds=seconds,
                            concurrency=concurrency,
                            users=users,
                        )
                        results.series.setdefault((scenario, variant), []).append(n / seconds)
    finally:
        await _forget_redis_keys(prefix)
        await bot.session.close()
        await database.dispose()
    return results


async def _forget_redis_keys(prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def report(results: Results) -> str:
    lines = ["FSM storage: updates/s (median round)", ""]
    lines.append(
        f"{'handler':<10} {'sqlalchemy':>11} {'redis':>9} {'memory':>9} {'ours/redis':>11}"
    )
    for scenario in SCENARIOS:
        row = [results.median(scenario, variant) for variant in VARIANTS]
        lines.append(
            f"{scenario:<10} {row[0]:>11.0f} {row[1]:>9.0f} {row[2]:>9.0f} "
            f"{results.ratio(scenario):>10.2f}x"
        )
    ratio = results.ratio("fsm+row")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    lines.append("")
    lines.append(
        f"{verdict}: SqlAlchemyStorage {ratio:.2f}x RedisStorage on the fsm+row handler "
        f"(target >= {TARGET_RATIO}x); fsm only: {results.ratio('fsm only'):.2f}x"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fsm", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 2
    logging.disable(logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run() -> Results:
        async with bench_database(Target()) as target:
            return await measure(
                target,
                seconds=args.seconds,
                rounds=args.rounds,
                concurrency=args.concurrency,
                users=args.users,
            )

    import uvloop

    print(report(uvloop.run(run())))


if __name__ == "__main__":
    main()
