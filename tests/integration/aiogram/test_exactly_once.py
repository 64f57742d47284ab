"""Exactly once: a redelivered update is acknowledged and not applied again, also when the
deliveries race; a database outage answers 503 and the retried update is then applied once.
Acceptance points 5 and 6 of issue 4, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx
import pytest
from aiogram import Dispatcher
from aiogram.types import ErrorEvent
from structlog.testing import capture_logs

from db_manager import DatabaseSettings
from tests.support.proxy import TcpProxy
from tests.support.updates import message_update, start_update

from .aiogram_webhook_app import Harness, HarnessFactory, build_dispatcher


async def no_hook() -> None:
    return None


# -- 5. redelivery -------------------------------------------------------------------------------


async def test_the_same_update_twice_in_a_row_is_applied_once(harness: Harness) -> None:
    update = start_update(update_id=3001, user_id=51)

    first = await harness.post(update)
    with capture_logs() as logs:
        second = await harness.post(update)

    assert first.status_code == 200
    assert first.json()["method"] == "sendMessage"
    # Acknowledged, and no second reply: the duplicate's handler stopped at its first statement.
    assert (second.status_code, second.content) == (200, b"")
    assert len(await harness.events("start")) == 1
    assert await harness.recorded_updates() == [3001]
    assert any(e["event"] == "duplicate update skipped" and e["update_id"] == 3001 for e in logs)


async def test_a_handler_that_swallows_the_duplicate_error_still_does_not_commit(
    harness: Harness,
) -> None:
    update = message_update("swallow", update_id=3002)

    first = await harness.post(update)
    second = await harness.post(update)

    assert first.json()["text"] == "swallowed"
    assert (second.status_code, second.content) == (200, b"")
    assert len(await harness.events("swallow")) == 1


async def test_twenty_concurrent_deliveries_are_applied_once(harness: Harness) -> None:
    """On PostgreSQL the twenty transactions really race: each inserts the update's row, and
    all but one wait on the primary key, then find it taken. On SQLite they serialize on
    ``BEGIN IMMEDIATE``. Either way: one effect, one reply, twenty 200s."""
    update = message_update("slow", update_id=3003, user_id=52)

    with capture_logs() as logs:
        responses = await asyncio.gather(*(harness.post(update) for _ in range(20)))

    assert [r.status_code for r in responses] == [200] * 20
    assert harness.calls_of("slow") == [3003] * 20  # twenty handlers really ran
    # Nineteen recognised duplicates, not nineteen integrity errors of a read-then-insert.
    skipped = [e for e in logs if e["event"] == "duplicate update skipped"]
    assert len(skipped) == 19
    assert [e for e in logs if e["log_level"] not in ("debug", "info")] == []
    replies = [r.json() for r in responses if r.content]
    assert replies == [{"method": "sendMessage", "chat_id": 52, "text": "done"}]
    assert len(await harness.events("slow")) == 1
    assert await harness.recorded_updates() == [3003]
    assert harness.checked_out == 0


async def test_distinct_updates_from_one_chat_are_all_applied(harness: Harness) -> None:
    """The control: the dedup key is the update id, not the chat or the content."""
    updates = [message_update("same text", update_id=3010 + i) for i in range(5)]
    responses = await asyncio.gather(*(harness.post(u) for u in updates))
    assert [r.status_code for r in responses] == [200] * 5
    assert len(await harness.events("text")) == 5


# -- 6. the database down ------------------------------------------------------------------------


@contextmanager
def sqlite_write_lock(path: str) -> Iterator[None]:
    """Another process's write transaction: for SQLite, "the database is unavailable"."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def dispatcher_with_catch_all_error_handler(
    calls: list[tuple[str, int]], seen: dict[str, list[Any]]
) -> Dispatcher:
    """Apps often log every error and tell the user "sorry": aiogram then swallows it."""
    dispatcher = build_dispatcher(calls, [], seen)

    @dispatcher.errors()
    async def catch_all(event: ErrorEvent) -> bool:
        calls.append(("errors", event.update.update_id))
        return True

    return dispatcher


@pytest.mark.parametrize(
    "error_handler", [pytest.param(False, id="plain"), pytest.param(True, id="catch-all-errors")]
)
async def test_database_down_answers_503_and_the_retry_is_applied_once(
    backend: str,
    db_settings: DatabaseSettings,
    make_harness: HarnessFactory,
    error_handler: bool,
) -> None:
    update = start_update(update_id=3020, user_id=53)
    calls: list[tuple[str, int]] = []
    seen: dict[str, list[Any]] = {}
    if error_handler:
        make_harness = partial(
            make_harness,
            dispatcher=dispatcher_with_catch_all_error_handler(calls, seen),
            calls=calls,
            seen=seen,
        )
    if backend == "sqlite":
        settings = db_settings.model_copy(update={"sqlite_busy_timeout": 0.2})
        async with make_harness(db=settings) as harness:
            assert settings.database is not None
            with sqlite_write_lock(settings.database), capture_logs() as logs:
                down = await harness.post(update)
            await _assert_outage_then_once(harness, down, logs, update)
    else:
        assert db_settings.host is not None and db_settings.port is not None
        async with TcpProxy(db_settings.host, db_settings.port) as proxy:
            settings = db_settings.model_copy(
                update={"port": proxy.port, "connect_timeout": 1.0, "pool_pre_ping": True}
            )
            async with make_harness(db=settings) as harness:
                # Warm the pool so the outage also breaks connections that are already open.
                warm = await harness.post(message_update("warm-up", update_id=3019))
                assert warm.status_code == 200
                await proxy.refuse()
                with capture_logs() as logs:
                    down = await harness.post(update)
                await proxy.forward()
                await _assert_outage_then_once(harness, down, logs, update)
    if error_handler:
        assert ("errors", 3020) in calls  # the app's error handler did see (and eat) it


async def _assert_outage_then_once(
    harness: Harness,
    down: httpx.Response,
    logs: list[MutableMapping[str, Any]],
    update: dict[str, Any],
) -> None:
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) >= 1
    assert await harness.events("start") == []
    assert await harness.recorded_updates() in ([], [3019])
    [entry] = [e for e in logs if e.get("update_id") == 3020]
    assert entry["log_level"] == "warning"

    # Telegram retries: now it is applied, and a further redelivery is not.
    retried = await harness.post(update)
    assert retried.status_code == 200
    assert retried.json()["method"] == "sendMessage"
    again = await harness.post(update)
    assert (again.status_code, again.content) == (200, b"")
    assert len(await harness.events("start")) == 1
    assert 3020 in await harness.recorded_updates()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_connection_lost_during_commit_answers_503_and_the_retry_is_applied_once(
    backend: str, db_settings: DatabaseSettings, make_harness: HarnessFactory
) -> None:
    """The handler's writes and the update's row are flushed, then the connection dies before
    COMMIT: the outcome is unknown, so the answer is 503; Telegram's retry is applied once."""
    assert db_settings.host is not None and db_settings.port is not None
    async with TcpProxy(db_settings.host, db_settings.port) as proxy:
        settings = db_settings.model_copy(
            update={"port": proxy.port, "connect_timeout": 1.0, "pool_pre_ping": True}
        )
        async with make_harness(db=settings) as harness:
            harness.before_commit[0] = proxy.refuse
            update = message_update("cut", update_id=3030, user_id=54)
            with capture_logs() as logs:
                down = await harness.post(update)
            assert down.status_code == 503
            assert "Retry-After" in down.headers
            assert any(
                e.get("update_id") == 3030 and "COMMIT" in str(e.get("error")) for e in logs
            ), logs
            assert await harness.events("cut") == []

            harness.before_commit[0] = no_hook
            await proxy.forward()
            retried = await harness.post(update)
            assert retried.json() == {"method": "sendMessage", "chat_id": 54, "text": "cut"}
            again = await harness.post(update)
            assert (again.status_code, again.content) == (200, b"")
            assert len(await harness.events("cut")) == 1


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_database_that_does_not_answer_gets_503_within_the_connect_timeout(
    backend: str, db_settings: DatabaseSettings, make_harness: HarnessFactory
) -> None:
    """The server accepts TCP but never answers: the update waits connect_timeout, not forever."""
    assert db_settings.host is not None and db_settings.port is not None
    async with TcpProxy(db_settings.host, db_settings.port) as proxy:
        settings = db_settings.model_copy(
            update={"port": proxy.port, "connect_timeout": 1.0, "pool_pre_ping": True}
        )
        async with make_harness(db=settings) as harness:
            update = start_update(update_id=3040, user_id=55)
            await proxy.blackhole()
            loop = asyncio.get_running_loop()
            started = loop.time()
            down = await harness.post(update)
            elapsed = loop.time() - started
            assert down.status_code == 503
            assert "Retry-After" in down.headers
            assert elapsed < 5

            await proxy.refuse()
            await proxy.forward()
            retried = await harness.post(update)
            assert retried.json()["method"] == "sendMessage"
            assert (await harness.post(update)).content == b""
            assert len(await harness.events("start")) == 1
