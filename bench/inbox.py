"""``python -m bench.inbox``: the webhook inbox against foreground processing and against
aiogram's own background mode, with PASS/FAIL lines.

Every server is a real process on loopback: this project's app under uvicorn (uvloop,
httptools), aiogram's ``SimpleRequestHandler`` under aiohttp's own server in its default
background mode (``handle_in_background=True``: it answers once the update is parsed and
runs the handler in a task). Both are forked from one pre-imported process
(``multiprocessing``'s forkserver: importing aiogram costs seconds, a fork milliseconds)
and pinned to core 0 when ``taskset`` could pin; the load generator (this process, an
asyncio loop of raw keep-alive HTTP/1.1 connections) runs on core 1. Each connection
POSTs real Telegram ``message`` updates (unique update ids, 100 chats) with the secret
header, as Telegram does with 40 connections by default.

The handler: ``sleep`` awaits 50 ms (a slow external call) and then INSERTs one row in
``bench__applied`` (the update id, the time of the INSERT); ``insert`` only INSERTs the row.
The row is what "applied" means: an update acknowledged (200) without its row after the
server was killed and restarted is lost.

1. Acknowledged updates/s with the ``sleep`` handler: inbox mode vs foreground mode (same
   app), p50/p99 of the acknowledgement; target: inbox >= 5x foreground.
2. The same against aiogram's background mode (same handler, its own engine): target:
   inbox >= 0.7x. Then a crash on both: a burst of updates, SIGKILL after half of them were
   acknowledged, restart, wait; acknowledged-but-never-applied updates are counted.
3. End-to-end processing throughput of the inbox (first store to last applied row) with
   1, 4 and 16 workers over 100 chats, both handlers; and the database round trips per
   update counted on the wire (:class:`~bench.wire.WireCounter`): foreground with dedup
   against the inbox's store + claim.

The run creates its own database (``BENCH_PG_*``, as ``python -m bench``) and drops it.
Options: ``--quick`` (about two minutes), ``--seconds``, ``--rounds``, ``--burst``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import asyncpg
import structlog
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Message, Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from fastapi import FastAPI
from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, func, insert
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    BOT_TOKEN,
    SECRET_HEADER,
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    Target,
    bench_database,
)
from bench.inprocess import AsgiClient
from bench.load import can_pin, free_port
from bench.loadgen import read_response
from bench.wire import WireCounter
from db_manager import Base, UnitOfWork
from db_manager.fastapi import database_lifespan, install_error_handlers
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.inbox import TelegramInboxItem
from db_manager.telegram.webhook import telegram_webhook_router

CONNECTIONS = 40
CHATS = 100
SLEEP = 0.05
FOREGROUND_TARGET = 5.0
PEER_TARGET = 0.7
WORKER_COUNTS = (1, 4, 16)
APP_VARIANTS = ("foreground", "inbox", "aiogram")
LABELS = {
    "foreground": "this project, foreground",
    "inbox": "this project, inbox (4 workers)",
    "aiogram": "aiogram aiohttp, background",
}
SERVER_CPU = 0
CLIENT_CPU = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

applied_metadata = MetaData()
APPLIED = Table(
    "bench__applied",
    applied_metadata,
    Column("update_id", BigInteger, primary_key=True, autoincrement=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("applied_at", DateTime(timezone=True), server_default=func.clock_timestamp()),
)
APPLY = insert(APPLIED)
INBOX_TABLE = cast(Table, TelegramInboxItem.__table__)
TABLES = ("db_manager__telegram_inbox", "db_manager__telegram_updates", "bench__applied")


# -- the servers ---------------------------------------------------------------------------


class OfflineSession(BaseSession):
    """A Bot API session that never reaches Telegram (the handlers call no method)."""

    async def close(self) -> None:
        return None

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        raise RuntimeError(f"the benchmark makes no Bot API call ({method.__api_method__})")

    async def stream_content(  # type: ignore[override]
        self, url: str, headers: dict[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> AsyncIterator[bytes]:
        raise RuntimeError("the benchmark streams nothing")
        yield b""  # pragma: no cover


def _applied_values(update: Update) -> dict[str, int]:
    chat = update.message.chat.id if update.message is not None else 0
    return {"update_id": update.update_id, "chat_id": chat}


def build_ours(target: Target, processing: str, workers: int) -> FastAPI:
    """This project's webhook app in ``processing`` mode; the handler writes one row."""
    settings = target.settings()
    telegram = TelegramSettings(
        token=BOT_TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        processing=processing,
        workers=workers,
        drain_timeout=2.0,
    )
    dispatcher = Dispatcher()
    router = Router()

    @router.message()
    async def on_message(message: Message, event_update: Update, uow: UnitOfWork) -> None:
        if message.text == "sleep":
            await asyncio.sleep(SLEEP)
        await uow.session.execute(APPLY, _applied_values(event_update))

    dispatcher.include_router(router)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            database_lifespan(settings)(app),
            telegram_lifespan(telegram, dispatcher, session=OfflineSession())(app),
        ):
            yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(telegram_webhook_router(WEBHOOK_PATH))
    return app


def build_peer(target: Target) -> web.Application:
    """aiogram's ``SimpleRequestHandler`` in its default background mode, the same handler
    on a hand-written engine (one transaction per applied update)."""
    bot = Bot(BOT_TOKEN, session=OfflineSession())
    dispatcher = Dispatcher()
    router = Router()
    engine = create_async_engine(
        target.url(), pool_size=target.pool_size, max_overflow=0, pool_pre_ping=False
    )

    @router.message()
    async def on_message(message: Message, event_update: Update) -> None:
        if message.text == "sleep":
            await asyncio.sleep(SLEEP)
        async with engine.begin() as conn:
            await conn.execute(APPLY, _applied_values(event_update))

    dispatcher.include_router(router)

    async def dispose(app: web.Application) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = web.Application()
    app.cleanup_ctx.append(dispose)
    SimpleRequestHandler(dispatcher, bot, secret_token=WEBHOOK_SECRET).register(
        app, path=WEBHOOK_PATH
    )
    setup_application(app, dispatcher, bot=bot)
    return app


@dataclass(frozen=True)
class ServerSpec:
    kind: str  # "ours" | "peer"
    port: int
    target: str  # Target.to_json()
    processing: str = "foreground"
    workers: int = 4
    pin: bool = False


def serve(spec: ServerSpec) -> None:
    """The body of a server process."""
    import uvloop

    if spec.pin:
        os.sched_setaffinity(0, {SERVER_CPU})
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiogram").setLevel(logging.ERROR)
    target = Target.from_json(spec.target)
    if spec.kind == "peer":
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        web.run_app(
            build_peer(target), host="127.0.0.1", port=spec.port, access_log=None, print=None
        )
        return
    import uvicorn

    uvicorn.run(
        build_ours(target, spec.processing, spec.workers),
        host="127.0.0.1",
        port=spec.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


_context: Any = None


def use_start_method(method: str) -> None:
    """``forkserver`` (the default: a clean, pre-imported parent) or ``fork`` (this very
    process, where everything is imported already: what a test uses, sparing the seconds
    the forkserver spends importing aiogram)."""
    global _context
    _context = multiprocessing.get_context(method)


def _forkserver() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["bench.inbox"])
    return _context


class Server:
    """One server process, forked from the pre-imported forkserver."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.process: Any = None

    @classmethod
    def ours(cls, target: Target, processing: str, workers: int = 4) -> Server:
        spec = ServerSpec("ours", free_port(), target.to_json(), processing, workers, can_pin())
        return cls(spec)

    @classmethod
    def peer(cls, target: Target) -> Server:
        return cls(ServerSpec("peer", free_port(), target.to_json(), pin=can_pin()))

    @property
    def port(self) -> int:
        return self.spec.port

    def start(self, timeout: float = 60.0) -> Server:
        self.process = _forkserver().Process(target=serve, args=(self.spec,), daemon=True)
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"{self.spec.kind} server exited with {self.process.exitcode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.spec.kind} server did not listen within {timeout}s")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / CLOCK_TICKS

    def kill(self) -> None:
        """SIGKILL: no shutdown, no drain."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        if self.spec.kind == "peer":
            # Its background tasks are lost at any exit; SIGTERM only adds the pool's
            # complaints about the connections they held.
            self.kill()
        elif self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
        self.process.join(5)
        self.process = None


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the load generator --------------------------------------------------------------------


def update_body(update_id: int, text: str) -> bytes:
    """A Telegram ``message`` update as the Bot API posts it, in one of 100 private chats."""
    chat_id = 10_000 + update_id % CHATS
    sender = {"id": chat_id, "is_bot": False, "first_name": "Ada", "username": "ada"}
    chat = {"id": chat_id, "first_name": "Ada", "username": "ada", "type": "private"}
    message = {
        "message_id": update_id,
        "from": sender,
        "chat": chat,
        "date": 1_735_689_600,
        "text": text,
    }
    return json.dumps({"update_id": update_id, "message": message}, separators=(",", ":")).encode()


def request_bytes(update_id: int, text: str) -> bytes:
    body = update_body(update_id, text)
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"{SECRET_HEADER}: {WEBHOOK_SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Drive:
    """What one load run saw."""

    seconds: float = 0.0
    acked: list[int] = field(default_factory=list)  # update ids answered 200
    latencies: list[float] = field(default_factory=list)  # seconds, of the 200s
    statuses: Counter[int] = field(default_factory=Counter)
    broken: int = 0  # connections that ended with an error (a killed server)

    @property
    def rate(self) -> float:
        return len(self.acked) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + self.broken


async def drive(
    port: int,
    ids: Iterator[int],
    *,
    text: str,
    connections: int = CONNECTIONS,
    seconds: float | None = None,
    total: int | None = None,
    on_ack: Callable[[int], None] | None = None,
) -> Drive:
    """``connections`` keep-alive connections, each POSTing its next update as soon as the
    previous answer is read, for ``seconds`` or until ``total`` updates were sent."""
    result = Drive()
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")

    async def connection() -> None:
        nonlocal sent
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            result.broken += 1
            return
        try:
            while time.perf_counter() < deadline and (total is None or sent < total):
                sent += 1
                update_id = next(ids)
                began = time.perf_counter()
                writer.write(request_bytes(update_id, text))
                status = await read_response(reader)
                result.statuses[status] += 1
                if status == 200:
                    result.latencies.append(time.perf_counter() - began)
                    result.acked.append(update_id)
                    if on_ack is not None:
                        on_ack(len(result.acked))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            result.broken += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


# -- the database --------------------------------------------------------------------------


async def create_tables(target: Target) -> None:
    engine = create_async_engine(target.url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all, tables=[INBOX_TABLE])
            await conn.run_sync(applied_metadata.create_all)
    finally:
        await engine.dispose()


class Db:
    """The benchmark's own look at the tables (asyncpg, outside every server)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Db:
        self.conn = await asyncpg.connect(self.target.dsn())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None
        return self.conn

    async def clear(self) -> None:
        await self.c.execute(f"TRUNCATE {', '.join(TABLES)}")

    async def applied_count(self) -> int:
        return int(await self.c.fetchval("SELECT count(*) FROM bench__applied"))

    async def applied_ids(self) -> set[int]:
        rows = await self.c.fetch("SELECT update_id FROM bench__applied")
        return {int(row[0]) for row in rows}

    async def inbox_counts(self) -> dict[str, int]:
        rows = await self.c.fetch(
            "SELECT status, count(*) FROM db_manager__telegram_inbox GROUP BY status"
        )
        return {str(row[0]): int(row[1]) for row in rows}

    async def wait_inbox_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (await self.inbox_counts()).get("pending"):
                return True
            await asyncio.sleep(0.1)
        return False

    async def first_store_to_last_applied(self) -> float:
        first = await self.c.fetchval("SELECT min(received_at) FROM db_manager__telegram_inbox")
        last = await self.c.fetchval("SELECT max(applied_at) FROM bench__applied")
        return float((last - first).total_seconds())


@contextlib.contextmanager
def client_core() -> Iterator[None]:
    """Pin this process (the load generator) to the client core while servers are pinned."""
    if not can_pin():
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# -- 1 and 2: acknowledgements -------------------------------------------------------------


@dataclass
class AckRun:
    variant: str
    drive: Drive
    applied: int  # rows applied by the end of the measured window
    cpu_us: float  # server CPU per acknowledged update


@dataclass
class AckResults:
    seconds: float
    rounds: int
    runs: list[AckRun] = field(default_factory=list)

    def of(self, variant: str) -> list[AckRun]:
        return [run for run in self.runs if run.variant == variant]

    def rate(self, variant: str) -> float:
        return statistics.median(run.drive.rate for run in self.of(variant))

    def ratio(self, variant: str, reference: str) -> float:
        pairs = zip(self.of(variant), self.of(reference), strict=True)
        return statistics.median(a.drive.rate / b.drive.rate for a, b in pairs)


def server_for(variant: str, target: Target) -> Server:
    if variant == "aiogram":
        return Server.peer(target)
    return Server.ours(target, variant, workers=4)


async def measure_acks(
    target: Target, ids: Iterator[int], *, seconds: float, rounds: int, warmup: float
) -> AckResults:
    results = AckResults(seconds=seconds, rounds=rounds)
    async with Db(target) as db:
        for round_no in range(rounds):
            order = APP_VARIANTS if round_no % 2 == 0 else APP_VARIANTS[::-1]
            for variant in order:
                await db.clear()
                with running(server_for(variant, target)) as server, client_core():
                    await drive(server.port, ids, text="sleep", seconds=warmup)
                    cpu = server.cpu_seconds()
                    run = await drive(server.port, ids, text="sleep", seconds=seconds)
                    cpu = server.cpu_seconds() - cpu
                    applied = await db.applied_count()
                acks = max(1, len(run.acked))
                results.runs.append(AckRun(variant, run, applied, cpu / acks * 1e6))
                print(
                    f"  {variant:<10} round {round_no + 1}: {run.rate:7.0f} acks/s, "
                    f"p50 {run.percentile(0.5):.1f} ms, p99 {run.percentile(0.99):.1f} ms",
                    flush=True,
                )
    return results


@dataclass
class Crash:
    variant: str
    sent: int
    acked: int
    applied: int  # of the acknowledged ones, after restart and wait
    dead: int = 0

    @property
    def lost(self) -> int:
        return self.acked - self.applied


async def measure_crash(
    target: Target, ids: Iterator[int], variant: str, *, burst: int, wait: float
) -> Crash:
    """``burst`` updates at 40 concurrent; SIGKILL once half were acknowledged; restart."""
    async with Db(target) as db:
        await db.clear()
        server = server_for(variant, target).start()
        try:

            def kill_at_half(acked: int) -> None:
                if acked == burst // 2:
                    server.kill()

            with client_core():
                run = await drive(server.port, ids, text="sleep", total=burst, on_ack=kill_at_half)
            server.stop()
            server.start()  # the same server again, as an orchestrator restarts it
            if variant == "inbox":
                await db.wait_inbox_empty(timeout=wait)
            else:
                await asyncio.sleep(min(wait, 2.0))  # nothing will come: no one retries
            applied = await db.applied_ids()
            dead = (await db.inbox_counts()).get("dead", 0)
        finally:
            server.stop()
    acked = set(run.acked)
    return Crash(variant, burst, len(acked), len(acked & applied), dead)


# -- 3: processing throughput and round trips ----------------------------------------------


@dataclass
class Throughput:
    workers: int
    handler: str
    updates: int
    seconds: float  # first store to last applied
    acked: int
    drained: bool

    @property
    def rate(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0


async def measure_processing(
    target: Target,
    ids: Iterator[int],
    *,
    insert_n: int,
    sleep_seconds: float,
    worker_counts: tuple[int, ...] = WORKER_COUNTS,
) -> list[Throughput]:
    results = []
    async with Db(target) as db:
        for workers in worker_counts:
            proc_target = replace(target, pool_size=workers + 6)
            with running(Server.ours(proc_target, "inbox", workers)) as server:
                for handler in ("insert", "sleep"):
                    n = insert_n if handler == "insert" else int(workers / SLEEP * sleep_seconds)
                    await db.clear()
                    with client_core():
                        run = await drive(server.port, ids, text=handler, total=n)
                    drained = await db.wait_inbox_empty(timeout=120)
                    applied = await db.applied_count()
                    spent = await db.first_store_to_last_applied()
                    results.append(
                        Throughput(workers, handler, applied, spent, len(run.acked), drained)
                    )
                    print(
                        f"  {workers:>2} workers, {handler:<6}: {applied} updates in "
                        f"{spent:.2f} s = {applied / spent:.0f}/s",
                        flush=True,
                    )
    return results


@dataclass(frozen=True)
class Trips:
    statements: float
    round_trips: float


@dataclass
class WireResults:
    n: int
    counts: dict[str, Trips] = field(default_factory=dict)

    def added(self, store: str = "inbox store") -> Trips:
        inbox = [self.counts[store], self.counts["inbox claim"]]
        base = self.counts["foreground"]
        return Trips(
            sum(t.statements for t in inbox) - base.statements,
            sum(t.round_trips for t in inbox) - base.round_trips,
        )


async def _post(client: AsgiClient, update_id: int) -> None:
    headers = [(SECRET_HEADER.lower().encode(), WEBHOOK_SECRET.encode())]
    status = await client.request("POST", WEBHOOK_PATH, update_body(update_id, "insert"), headers)
    if status != 200:
        raise RuntimeError(f"webhook answered {status}")


async def count_round_trips(target: Target, ids: Iterator[int], n: int) -> WireResults:
    """Per update, in-process through the counting proxy, the ``insert`` handler."""
    results = WireResults(n)
    counter = WireCounter(target.host, target.port)
    proxied = target.with_port(await counter.start())
    try:
        async with Db(target) as db:
            for mode, workers in (("foreground", 0), ("inbox", 0), ("inbox", 4)):
                await db.clear()
                client = AsgiClient(build_ours(proxied, mode, workers))
                await client.start()
                try:
                    for _ in range(10):  # warm-up: connections, prepared statements
                        await _post(client, next(ids))
                    runtime = client.app.state.telegram
                    if mode == "inbox" and workers == 0:
                        while await runtime.inbox.process_one():
                            pass
                    elif mode == "inbox":
                        await db.wait_inbox_empty(timeout=30)
                    counter.reset()
                    for _ in range(n):
                        await _post(client, next(ids))
                    if mode == "foreground":
                        results.counts["foreground"] = _trips(counter, n)
                    elif workers == 0:
                        results.counts["inbox store"] = _trips(counter, n)
                        counter.reset()
                        await _post_concurrently(client, [next(ids) for _ in range(n)])
                        results.counts[f"inbox store, {CONNECTIONS} at once"] = _trips(counter, n)
                        counter.reset()
                        for _ in range(n):
                            await runtime.inbox.process_one()
                        results.counts["inbox claim"] = _trips(counter, n)
                        while await runtime.inbox.process_one():  # the concurrent ones
                            pass
                        counter.reset()
                        await runtime.inbox.process_one()  # nothing due
                        results.counts["empty claim"] = _trips(counter, 1)
                    else:
                        await db.wait_inbox_empty(timeout=30)
                        await asyncio.sleep(0.3)  # the last workers' empty claims
                        results.counts["inbox, 4 workers, 1 by 1"] = _trips(counter, n)
                        counter.reset()
                        await _post_concurrently(client, [next(ids) for _ in range(n)])
                        await db.wait_inbox_empty(timeout=30)
                        await asyncio.sleep(0.3)
                        results.counts[f"inbox, 4 workers, {CONNECTIONS} at once"] = _trips(
                            counter, n
                        )
                finally:
                    await client.stop()
    finally:
        await counter.stop()
    return results


async def _post_concurrently(client: AsgiClient, update_ids: list[int]) -> None:
    """``CONNECTIONS`` deliveries at a time, as Telegram makes them."""
    for start in range(0, len(update_ids), CONNECTIONS):
        chunk = update_ids[start : start + CONNECTIONS]
        await asyncio.gather(*(_post(client, update_id) for update_id in chunk))


def _trips(counter: WireCounter, n: int) -> Trips:
    return Trips(counter.statements / n, counter.round_trips / n)


# -- the report ----------------------------------------------------------------------------


@dataclass
class InboxRun:
    acks: AckResults
    crashes: list[Crash]
    processing: list[Throughput]
    wire: WireResults
    seconds: float = 0.0


def report(run: InboxRun) -> list[str]:
    lines = [
        f"1-2. acknowledgements, 50 ms handler, {CONNECTIONS} connections, "
        f"{run.acks.rounds} round(s) of {run.acks.seconds:g} s (median)",
        f"{'variant':<34} {'acks/s':>8} {'per round':>20} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'errors':>6} {'applied':>8} {'CPU us/ack':>10}",
    ]
    for variant in APP_VARIANTS:
        runs = run.acks.of(variant)
        middle = sorted(runs, key=lambda r: r.drive.rate)[len(runs) // 2]
        per_round = " / ".join(f"{r.drive.rate:.0f}" for r in runs)
        lines.append(
            f"{LABELS[variant]:<34} {run.acks.rate(variant):>8.0f} {per_round:>20} "
            f"{middle.drive.percentile(0.5):>7.1f} {middle.drive.percentile(0.99):>8.1f} "
            f"{sum(r.drive.errors for r in runs):>6} {middle.applied:>8} {middle.cpu_us:>10.0f}"
        )
    foreground = run.acks.ratio("inbox", "foreground")
    peer = run.acks.ratio("inbox", "aiogram")
    lines.append("")
    lines.append(
        f"{'PASS' if foreground >= FOREGROUND_TARGET else 'FAIL'}: inbox acknowledges "
        f"{foreground:.2f}x the updates/s of foreground mode (target >= {FOREGROUND_TARGET:g}x)"
    )
    lines.append(
        f"{'PASS' if peer >= PEER_TARGET else 'FAIL'}: inbox acknowledges {peer:.2f}x the "
        f"updates/s of aiogram's background mode (target >= {PEER_TARGET:g}x)"
    )
    lines.append("")
    lines.append("crash: SIGKILL after half the burst was acknowledged, restart, wait")
    for crash in run.crashes:
        lines.append(
            f"  {LABELS[crash.variant]:<34} sent {crash.sent}, acknowledged {crash.acked}, "
            f"applied {crash.applied}, lost {crash.lost}"
            + (f", dead {crash.dead}" if crash.variant == "inbox" else "")
        )
    by_variant = {crash.variant: crash for crash in run.crashes}
    inbox, aiogram = by_variant["inbox"], by_variant["aiogram"]
    lines.append(
        f"{'PASS' if inbox.lost == 0 and inbox.acked else 'FAIL'}: acknowledged but never "
        f"applied after SIGKILL: inbox {inbox.lost} of {inbox.acked}, aiogram background "
        f"{aiogram.lost} of {aiogram.acked}"
    )
    lines.append("")
    lines.append("3. inbox processing throughput, first store to last applied, 100 chats")
    lines.append(f"{'workers':>7} {'handler':<22} {'updates':>8} {'seconds':>8} {'updates/s':>10}")
    for item in run.processing:
        handler = "INSERT" if item.handler == "insert" else "50 ms sleep + INSERT"
        note = "" if item.drained else "  (not drained)"
        lines.append(
            f"{item.workers:>7} {handler:<22} {item.updates:>8} {item.seconds:>8.2f} "
            f"{item.rate:>10.0f}{note}"
        )
    lines.append("")
    lines.append(f"database traffic per update, counted on the wire ({run.wire.n} updates)")
    lines.append(f"{'path':<24} {'statements':>10} {'round trips':>12}")
    for name, trips in run.wire.counts.items():
        lines.append(f"{name:<24} {trips.statements:>10.2f} {trips.round_trips:>12.2f}")
    for store, how in (
        ("inbox store", "one delivery at a time"),
        (f"inbox store, {CONNECTIONS} at once", f"{CONNECTIONS} deliveries at once"),
    ):
        extra = run.wire.added(store)
        lines.append(
            f"inbox (store + claim) vs foreground with dedup, {how}: "
            f"{extra.statements:+.2f} statements, {extra.round_trips:+.2f} round trips per update"
        )
    return lines


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    seconds: float
    rounds: int
    warmup: float
    burst: int
    insert_n: int
    sleep_seconds: float  # how long each sleep-handler processing run should take
    wire_n: int
    crash_wait: float


FULL = Plan(
    seconds=5.0,
    rounds=3,
    warmup=1.0,
    burst=2000,
    insert_n=3000,
    sleep_seconds=5.0,
    wire_n=200,
    crash_wait=120,
)
QUICK = Plan(
    seconds=2.0,
    rounds=1,
    warmup=0.5,
    burst=1000,
    insert_n=1000,
    sleep_seconds=2.0,
    wire_n=50,
    crash_wait=60,
)
TINY = Plan(
    seconds=0.3,
    rounds=1,
    warmup=0.1,
    burst=120,
    insert_n=60,
    sleep_seconds=0.25,
    wire_n=5,
    crash_wait=20,
)


async def run(plan: Plan) -> InboxRun:
    began = time.monotonic()
    ids = itertools.count(700_000_001)
    async with bench_database(Target(pool_size=10)) as target:
        await create_tables(target)
        print(
            f"database {target.database}; forking servers from a pre-imported process", flush=True
        )
        print("1-2. acknowledged updates/s", flush=True)
        acks = await measure_acks(
            target, ids, seconds=plan.seconds, rounds=plan.rounds, warmup=plan.warmup
        )
        print("crash: SIGKILL mid-burst", flush=True)
        crashes = [
            await measure_crash(target, ids, variant, burst=plan.burst, wait=plan.crash_wait)
            for variant in ("aiogram", "inbox")
        ]
        print("3. processing throughput", flush=True)
        processing = await measure_processing(
            target, ids, insert_n=plan.insert_n, sleep_seconds=plan.sleep_seconds
        )
        print("counting round trips", flush=True)
        wire = await count_round_trips(target, ids, plan.wire_n)
    return InboxRun(acks, crashes, processing, wire, time.monotonic() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inbox", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, smaller bursts")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test
    parser.add_argument("--seconds", type=float, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, help="rounds of the acknowledgement measurement")
    parser.add_argument("--burst", type=int, help="updates posted in the crash test")
    args = parser.parse_args(argv)
    plan = TINY if args.tiny else QUICK if args.quick else FULL
    # The forked servers re-run this module as __mp_main__ (harmless; runpy warns).
    os.environ["PYTHONWARNINGS"] = ",".join(
        filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore::RuntimeWarning:runpy"])
    )
    for name in ("seconds", "rounds", "burst"):
        if getattr(args, name) is not None:
            plan = replace(plan, **{name: getattr(args, name)})
    logging.disable(logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import uvloop

    result = uvloop.run(run(plan))
    lines = report(result)
    print()
    print("\n".join(lines))
    print(f"\n({result.seconds:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 0 if all(not line.startswith("FAIL") for line in lines) else 1


if __name__ == "__main__":
    # Run as the importable module, so the forked servers find every name by it.
    from bench.inbox import main as module_main

    sys.exit(module_main())
