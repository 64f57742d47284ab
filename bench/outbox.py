"""``python -m bench.outbox``: what the outbox costs a handler, and how fast its sender delivers.

* **Enqueue** - microseconds per :meth:`~db_manager.telegram.outbox.Outbox.send` inside an
  open transaction on PostgreSQL (in-process, one INSERT that also notifies), next to a
  hand-written asyncpg INSERT of the same row on the same server as the floor. Median of
  ``--rounds`` rounds of ``--n`` messages.
* **Delivery** - the sender against the fake Bot API server (``tests.support.fake_bot_api``)
  at Telegram's limits (``[bot]`` defaults: 1/s per private chat, 30/s per bot): messages/s
  over ``--messages`` messages to as many private chats plus a few chats that get several,
  and the limit violations read from the server's own arrival times (target: none, and at
  least 85% of the bot rate). Then with the limits lifted (``--unlimited``), the sender's
  own ceiling on this machine.

The run creates its own database (``BENCH_PG_*``, as ``python -m bench``) and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import structlog
from aiogram.methods import SendMessage
from sqlalchemy import Table, delete, select

from bench.common import Target, bench_database
from db_manager import Base, Database
from db_manager.telegram import TelegramSettings, build_bot
from db_manager.telegram.outbox import Outbox, OutboxMessage
from db_manager.telegram.sender import OutboxSender
from tests.support.fake_bot_api import FakeBotApi, max_per_window, min_gap_per_chat

BOT_TOKEN = "123456:BENCH-outbox"
BOT_ID = 123456
TARGET_SHARE = 0.85  # of the bot rate at the default limits
OUTBOX = cast(Table, OutboxMessage.__table__)


@dataclass
class Delivery:
    messages: int
    seconds: float
    per_second: float
    max_in_one_second: int
    min_chat_gap: float
    bot_rate: float
    chat_rate: float

    @property
    def violations(self) -> int:
        over_bot = max(0, self.max_in_one_second - int(self.bot_rate))
        under_gap = 1 if self.min_chat_gap < 1 / self.chat_rate else 0
        return over_bot + under_gap


async def create_outbox_table(target: Target) -> None:
    database = Database(target.settings())
    await database.start()
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all, tables=[OUTBOX])
    finally:
        await database.dispose()


async def enqueue_cost(target: Target, *, n: int, rounds: int) -> tuple[float, float]:
    """(µs per Outbox.send, µs per hand-written asyncpg INSERT), medians of the rounds."""
    database = Database(target.settings())
    await database.start()
    raw = await asyncpg.connect(target.dsn())
    ours: list[float] = []
    floor: list[float] = []
    payload = json.dumps({"chat_id": 1, "text": "hello from the benchmark"})
    sql = (
        "INSERT INTO db_manager__telegram_outbox (bot_id, chat_key, chat_kind, method, payload,"
        " status, attempts, next_attempt_at, created_at) VALUES ($1, $2, 'private',"
        " 'sendMessage', $3::jsonb, 'pending', 0, now(), now()) RETURNING pg_notify('x', '')"
    )
    try:
        for round_id in range(rounds + 1):  # round 0 warms up (prepared statements, pool)
            async with database.uow_factory() as uow:
                outbox = Outbox(uow, BOT_ID)
                await uow.session.execute(select(OUTBOX).limit(0))  # BEGIN
                started = time.perf_counter()
                for i in range(n):
                    await outbox.send(SendMessage(chat_id=i + 1, text="hello from the benchmark"))
                elapsed = time.perf_counter() - started
                await uow.rollback()
            async with raw.transaction():
                started_raw = time.perf_counter()
                for i in range(n):
                    await raw.execute(sql, BOT_ID, i + 1, payload)
                elapsed_raw = time.perf_counter() - started_raw
                await raw.execute("SELECT 1")
            if round_id:
                ours.append(elapsed / n * 1e6)
                floor.append(elapsed_raw / n * 1e6)
    finally:
        await raw.close()
        await database.dispose()
    return statistics.median(ours), statistics.median(floor)


async def delivery(
    target: Target, *, messages: int, repeated: int, unlimited: bool = False
) -> Delivery:
    """Enqueue, then time the sender from its start to the last call the server received."""
    database = Database(target.settings())
    await database.start()
    overrides: dict[str, Any] = {}
    if unlimited:
        overrides = {"bot_rate": 100_000.0, "private_chat_rate": 100_000.0}
    with FakeBotApi() as fake:
        settings = TelegramSettings(
            token=BOT_TOKEN, webhook_secret="s", api_server=fake.base_url, **overrides
        )
        bot = build_bot(settings)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(delete(OUTBOX))
            async with database.uow_factory() as uow:
                outbox = Outbox(uow, BOT_ID)
                # A few chats get several (the per-chat limit), enqueued first: behind the
                # broadcast they would add a tail of `repeated` seconds that no sender can
                # shorten, and the rate would measure that instead of the bot's limit.
                for k in range(repeated):
                    for chat in (1, 2, 3):
                        await outbox.send(SendMessage(chat_id=chat, text=f"m{chat}.{k}"))
                for chat in range(1, messages + 1):
                    await outbox.send(SendMessage(chat_id=chat, text=f"m{chat}"))
            total = messages + 3 * repeated
            sender = OutboxSender(bot, database.engine, settings)
            started = time.monotonic()
            await sender.start()
            try:
                await fake.wait_calls(total, "sendMessage", timeout=10 + total / 10)
            finally:
                await sender.stop(5.0)
            calls = fake.delivered("sendMessage")
            last = max(call.at for call in calls)
            seconds = last - started
            return Delivery(
                messages=len(calls),
                seconds=seconds,
                per_second=len(calls) / seconds,
                max_in_one_second=max_per_window(calls, 1.0),
                min_chat_gap=min_gap_per_chat(calls),
                bot_rate=settings.bot_rate,
                chat_rate=settings.private_chat_rate,
            )
        finally:
            await bot.session.close()
            await database.dispose()


def report(enqueue: tuple[float, float], limited: Delivery, unlimited: Delivery | None) -> bool:
    ours, floor = enqueue
    print("Outbox: enqueue inside a transaction (PostgreSQL, in-process, median round)")
    print(f"  Outbox.send            {ours:8.1f} us/message")
    print(f"  asyncpg INSERT (floor) {floor:8.1f} us/message   ratio {ours / floor:.2f}x")
    print()
    print("Outbox sender: delivery to the fake Bot API server")
    rows = [("default limits", limited)] + ([("limits lifted", unlimited)] if unlimited else [])
    for label, result in rows:
        print(
            f"  {label:<15} {result.messages:5d} messages in {result.seconds:6.2f} s = "
            f"{result.per_second:7.1f}/s; max {result.max_in_one_second} in 1 s; "
            f"min gap per chat {result.min_chat_gap:.3f} s"
        )
    print()
    ok = limited.violations == 0 and limited.per_second >= TARGET_SHARE * limited.bot_rate
    verdict = "PASS" if ok else "FAIL"
    print(
        f"{verdict}: {limited.violations} limit violations at the configured limits "
        f"({limited.bot_rate:.0f}/s per bot, {limited.chat_rate:.0f}/s per chat); "
        f"{limited.per_second:.1f} messages/s (target >= {TARGET_SHARE * limited.bot_rate:.0f}/s)"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="messages per enqueue round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=300, help="chats in the delivery run")
    parser.add_argument("--repeated", type=int, default=3, help="extra messages to 3 chats")
    parser.add_argument("--unlimited", type=int, default=1000, help="messages, limits lifted")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run() -> bool:
        async with bench_database(Target(pool_size=10)) as target:
            await create_outbox_table(target)
            cost = await enqueue_cost(target, n=args.n, rounds=args.rounds)
            limited = await delivery(target, messages=args.messages, repeated=args.repeated)
            unlimited = None
            if args.unlimited:
                unlimited = await delivery(
                    target, messages=args.unlimited, repeated=0, unlimited=True
                )
            return report(cost, limited, unlimited)

    asyncio.run(run())


if __name__ == "__main__":
    main()
