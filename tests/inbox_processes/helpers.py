"""Machinery of the inbox process tests: the app in a uvicorn child, posting as Telegram does,
and looking at the database from outside (a connection of the test's own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db_manager import DatabaseSettings
from db_manager.telegram.inbox import TelegramInboxItem
from db_manager.telegram.store import TelegramUpdate
from tests.support.postgres import pg_connect, pg_settings
from tests.support.processes import child_env
from tests.support.served import Served
from tests.support.updates import encode, message_update, secret_header

from .inbox_app import APP_ENV, WEBHOOK_PATH, Applied, InboxTestModel

FACTORY = "tests.inbox_processes.inbox_app:create_app"
APPLIED = Applied.__tablename__
HEADERS = {"Content-Type": "application/json", **secret_header()}


def app_database(database: str, **overrides: Any) -> DatabaseSettings:
    """The child's settings: its own ``application_name`` (to find its backends), no
    ``create_tables`` (the test made them), a pool that fits 8 workers plus the webhook."""
    values: dict[str, Any] = {
        "create_tables": False,
        "pool_size": 8,
        "max_overflow": 4,
        "application_name": f"inbox_{uuid.uuid4().hex[:10]}",
    }
    return pg_settings(database, **{**values, **overrides})


async def create_tables(settings: DatabaseSettings) -> None:
    """The inbox, the dedup table (foreground mode) and the test table."""
    engine = create_async_engine(settings.sqlalchemy_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for table in (TelegramInboxItem.__table__, TelegramUpdate.__table__):
                await conn.run_sync(table.create, checkfirst=True)  # type: ignore[attr-defined]
            await conn.run_sync(InboxTestModel.metadata.create_all)
    finally:
        await engine.dispose()


class ForkedProcess:
    """A child of the :class:`ForkServer`, with the part of ``Popen``'s interface we use."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.poll(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.01)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)


class ForkServer:
    """``python -m tests.inbox_processes.forkserver``: forks uvicorn children on request
    (see that module); its requests are serialized, so threads may share it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.inbox_processes.forkserver"],
            env=child_env(PYTHONUNBUFFERED="1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server ended ({self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, env: dict[str, str], port: int, log: Path) -> ForkedProcess:
        answer = self._ask({"op": "spawn", "env": env, "port": port, "log": str(log)})
        return ForkedProcess(self, int(answer["pid"]))

    def poll(self, pid: int) -> int | None:
        code = self._ask({"op": "poll", "pid": pid})["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class InboxProcess(Served):
    """``tests.inbox_processes.inbox_app:create_app`` served by uvicorn, one process; forked
    by ``forkserver`` when given (fast), else ``python -m uvicorn ... --factory``."""

    process: Any
    live_interval = 0.05

    def __init__(
        self,
        database: DatabaseSettings,
        bot: dict[str, Any],
        *,
        slow_cap: float | None = None,
        forkserver: ForkServer | None = None,
    ) -> None:
        fields = database.model_dump(mode="json", exclude={"password", "url"})
        config = {"database": fields, "bot": bot, "slow_cap": slow_cap}
        super().__init__(FACTORY, env={APP_ENV: json.dumps(config)})
        self.database = database
        self.bot = bot
        self.forkserver = forkserver

    def launch(self) -> None:
        if self.forkserver is None:
            super().launch()
        else:
            self.process = self.forkserver.spawn(self.env, self.port, self.log)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return int(self.process.pid)

    def kill(self) -> None:
        """SIGKILL: no drain, no shutdown, connections dropped by the kernel."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator sends it; the process drains and exits on its own."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end; its return code (-15: it ended by SIGTERM)."""
        assert self.process is not None
        code = int(self.process.wait(timeout))
        self.process = None
        return code

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def cleanup(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        self.log.unlink(missing_ok=True)

    async def start_async(self, timeout: float = 40) -> None:
        """:meth:`start` off the event loop (it polls with a blocking client)."""
        await asyncio.to_thread(self.start, timeout)


# The bot settings of the load tests (crash, terminated backends): inbox mode, 4 workers.
INBOX_MODE: dict[str, Any] = {
    "processing": "inbox",
    "workers": 4,
    "poll_interval": 0.5,
    "retry_base": 0.2,
}


@dataclass
class InboxMode:
    """App processes in :data:`INBOX_MODE` on one database (the ``inbox_mode`` fixture)."""

    database: DatabaseSettings
    make: Callable[..., InboxProcess]  # the ``processes`` fixture: each is killed at the end

    async def start(self, count: int) -> list[InboxProcess]:
        """``count`` processes on :attr:`database`, started side by side."""
        apps = [self.make(self.database, dict(INBOX_MODE)) for _ in range(count)]
        await asyncio.gather(*(app.start_async() for app in apps))
        return apps


def output_lines(output: str, marker: str) -> list[int]:
    """The update ids of the ``marker`` lines (``START``/``END``) in a child's output."""
    prefix = marker + " "
    return [int(line[len(prefix) :]) for line in output.splitlines() if line.startswith(prefix)]


# -- posting as Telegram does ------------------------------------------------------------------


def chat_update(update_id: int, chat_id: int, text: str = "hello") -> bytes:
    return encode(message_update(text, update_id=update_id, chat_id=chat_id, user_id=chat_id))


@dataclass
class Deliveries:
    """What the posting side saw: answers by status, transport failures, retries."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # updates that needed more than one delivery
    acknowledged: set[int] = field(default_factory=set)
    retry_after_seen: set[str] = field(default_factory=set)


async def deliver(
    sessions: list[aiohttp.ClientSession],
    update_id: int,
    body: bytes,
    seen: Deliveries,
    *,
    first: int = 0,
    give_up_after: float = 60.0,
) -> None:
    """POST until a 200, as Telegram redelivers: a refused connection, a cut one or a 503 is
    retried on the next session (the other process) after a short pause. Only a 200 is an
    acknowledgement."""
    deadline = time.monotonic() + give_up_after
    attempt = 0
    while True:
        session = sessions[(first + attempt) % len(sessions)]
        attempt += 1
        try:
            async with session.post(WEBHOOK_PATH, data=body, headers=HEADERS) as answer:
                await answer.read()
                status, retry_after = answer.status, answer.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen.failures[type(exc).__name__] += 1
        else:
            seen.statuses[status] += 1
            if status == 200:
                seen.acknowledged.add(update_id)
                if attempt > 1:
                    seen.retried += 1
                return
            if retry_after is not None:
                seen.retry_after_seen.add(retry_after)
        if time.monotonic() > deadline:
            raise AssertionError(f"update {update_id} was never acknowledged: {seen}")
        # Telegram waits before a redelivery; a short pause keeps the test quick.
        await asyncio.sleep(0.05 if attempt % len(sessions) else 0.2)


def poster(port: int) -> aiohttp.ClientSession:
    """A client for many posts (aiohttp: a tenth of httpx's CPU per request)."""
    return aiohttp.ClientSession(
        f"http://127.0.0.1:{port}",
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=60),
    )


async def post_during(
    disruption: Callable[[], Coroutine[Any, Any, None]],
    ports: list[int],
    expected: dict[int, int],
    seen: Deliveries,
    observer: Observer,
    *,
    batch: int,
    ahead: int,
    timeout: float,
) -> float:
    """Post ``expected`` (``update_id -> chat_id``, in that order) to the apps on ``ports`` as
    Telegram does while ``disruption()`` runs beside; once all are acknowledged, wait up to
    ``timeout`` seconds for it to end. Returns the ``time.monotonic()`` of the last
    acknowledgement.

    A batch of ``batch`` updates is posted once the batch before it is acknowledged, and only
    while at most ``ahead`` acknowledged updates wait to be applied; the n-th post of a batch
    goes to ``ports[n % len(ports)]`` first (:func:`deliver` retries it on the next one)."""
    bodies = {update_id: chat_update(update_id, chat) for update_id, chat in expected.items()}
    ids = list(bodies)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(poster(port)) for port in ports]
        task = asyncio.create_task(disruption())
        try:
            for start in range(0, len(ids), batch):
                while len(seen.acknowledged) - await observer.applied_count() > ahead:
                    await asyncio.sleep(0.05)
                await asyncio.gather(
                    *(
                        deliver(clients, update_id, bodies[update_id], seen, first=n % len(ports))
                        for n, update_id in enumerate(ids[start : start + batch])
                    )
                )
            posted = time.monotonic()
            await asyncio.wait_for(task, timeout)
        finally:
            task.cancel()
    return posted


def client_for(port: int, *, timeout: float = 30.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=limits)


# -- observing the database --------------------------------------------------------------------


class Observer:
    """One asyncpg connection of the test's own to the test database."""

    def __init__(self, conn: asyncpg.Connection, database: str) -> None:
        self._conn = conn
        self.database = database
        self._lock = asyncio.Lock()  # one statement at a time on the one connection

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            return list(await self._conn.fetch(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._lock:
            return await self._conn.fetchval(query, *args)

    @classmethod
    async def open(cls, database: str) -> Observer:
        return cls(await pg_connect(database=database), database)

    async def close(self) -> None:
        await self._conn.close()

    async def applied_count(self) -> int:
        return int(await self.fetchval(f"SELECT count(*) FROM {APPLIED}"))

    async def applied(self) -> list[asyncpg.Record]:
        return list(
            await self.fetch(f"SELECT id, chat_id, update_id, pid FROM {APPLIED} ORDER BY id")
        )

    async def inbox_counts(self) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT status, count(*) AS n FROM db_manager__telegram_inbox GROUP BY status"
        )
        return {row["status"]: int(row["n"]) for row in rows}

    async def inbox_rows(self, update_ids: list[int]) -> dict[int, asyncpg.Record]:
        rows = await self.fetch(
            "SELECT update_id, status, attempts FROM db_manager__telegram_inbox "
            "WHERE update_id = ANY($1::bigint[])",
            update_ids,
        )
        return {int(row["update_id"]): row for row in rows}

    async def app_backends(self, application_name: str) -> list[asyncpg.Record]:
        return list(
            await self.fetch(
                "SELECT pid, state, query FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
                self.database,
                application_name,
            )
        )

    async def terminate_app_backends(self, application_name: str) -> int:
        """``pg_terminate_backend`` on every backend of the app; how many were cut."""
        return int(
            await self.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
                self.database,
                application_name,
            )
        )


def check_exactly_once_in_chat_order(
    applied: list[asyncpg.Record], expected: dict[int, int]
) -> None:
    """Every expected update (``update_id -> chat_id``) applied exactly once, nothing else,
    and in each chat the order of application (the serial id) is the update_id order."""
    counts = Counter(int(row["update_id"]) for row in applied)
    doubled = {update_id: n for update_id, n in counts.items() if n > 1}
    missing = sorted(set(expected) - set(counts))
    unexpected = sorted(set(counts) - set(expected))
    assert not doubled, f"applied more than once: {doubled}"
    assert not missing, f"never applied ({len(missing)}): {missing[:20]}"
    assert not unexpected, f"applied but never sent: {unexpected[:20]}"
    assert len(applied) == len(expected)
    by_chat: dict[int, list[int]] = {}
    for row in applied:  # ordered by id
        assert int(row["chat_id"]) == expected[int(row["update_id"])]
        by_chat.setdefault(int(row["chat_id"]), []).append(int(row["update_id"]))
    out_of_order = {chat: ids for chat, ids in by_chat.items() if ids != sorted(ids)}
    assert not out_of_order, f"applied out of update_id order in chats {sorted(out_of_order)}"
