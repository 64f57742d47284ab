"""Inbox retries: transient failures back off and apply once, bugs end dead, operators retry."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import SendMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager.telegram.inbox import retry_updates
from tests.support.asgi import running
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, pg_fetch, pg_settings
from tests.support.processes import child_env
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    scenario_app,
    telegram_settings,
)
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, message_update, next_update_id
from tests.support.waiting import wait_for

from .inbox_helpers import INBOX, marks_are, noop

pytestmark = pytest.mark.postgres

A_METHOD = SendMessage(chat_id=1, text="x")


@pytest.fixture
def plain_tracebacks() -> Iterator[None]:
    """Render logged tracebacks plainly: structlog's default console renderer formats them
    with rich and every frame's locals, seconds per dead-letter log on a busy machine."""
    saved = structlog.get_config()
    processors = list(saved["processors"])
    if processors and isinstance(processors[-1], structlog.dev.ConsoleRenderer):
        processors[-1] = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(processors=processors)
    try:
        yield
    finally:
        structlog.configure(**saved)


async def inbox_row(database: str, update_id: int) -> dict[str, Any]:
    rows = await pg_fetch(
        f"SELECT status, attempts, last_error, finished_at FROM {INBOX} WHERE update_id = $1",
        update_id,
        database=database,
    )
    assert len(rows) == 1, rows
    return dict(rows[0])


async def app_command(database: str, *args: str) -> tuple[int, str, str]:
    """``python -m app ARGS`` against ``database``; the loop keeps running meanwhile."""
    env = child_env(
        DATABASE__URL=f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}",
        BOT__TOKEN=BOT_TOKEN,
        BOT__WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_transient_failure_is_retried_after_its_backoff_and_applied_once(
    pg_database: str,
) -> None:
    attempts: list[float] = []

    async def flaky(run: Run) -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise TelegramNetworkError(method=A_METHOD, message="connection reset")

    app = scenario_app(
        pg_settings(pg_database),
        {"flaky": flaky},
        # max_attempts=2: transient failures are not counted against it. One worker: see
        # test_a_second_worker_does_not_skip_the_backoff for several.
        telegram=telegram_settings(
            processing="inbox", workers=1, poll_interval=0.05, retry_base=0.05, max_attempts=2
        ),
    )
    async with running(app) as client:
        update = message_update("flaky", update_id=next_update_id())
        assert (await post_update(client, update)).status_code == 200
        assert await wait_for(lambda: marks_are(app.state.engine, "flaky", 1), timeout=60)
        row = await inbox_row(pg_database, update["update_id"])
    assert len(attempts) == 3
    assert row["status"] == "done"
    assert row["attempts"] == 2  # the failed attempts
    assert "TelegramNetworkError" in row["last_error"]
    # Backoff: at least half of retry_base * 2**(attempt-1) before each retry.
    assert attempts[1] - attempts[0] >= 0.025
    assert attempts[2] - attempts[1] >= 0.05


async def test_a_bug_ends_dead_later_updates_go_on_and_an_operator_retries_it(
    pg_database: str, plain_tracebacks: None
) -> None:
    broken = True
    calls = 0

    async def buggy(run: Run) -> None:
        nonlocal calls
        calls += 1
        if broken:
            raise ValueError("bug in the handler")

    app = scenario_app(
        pg_settings(pg_database),
        {"buggy": buggy, "noop": noop},
        telegram=telegram_settings(
            processing="inbox", workers=1, poll_interval=0.05, retry_base=0.05, max_attempts=3
        ),
    )
    async with running(app) as client:
        engine: AsyncEngine = app.state.engine
        bad = message_update("buggy", update_id=next_update_id(), chat_id=2001, user_id=2001)
        later = message_update("noop", update_id=next_update_id(), chat_id=2001, user_id=2001)
        assert (await post_update(client, bad)).status_code == 200
        assert (await post_update(client, later)).status_code == 200
        assert await wait_for(lambda: marks_are(engine, "noop", 1), timeout=60)

        dead = await inbox_row(pg_database, bad["update_id"])
        assert dead["status"] == "dead"
        assert dead["attempts"] == 3
        assert calls == 3
        assert dead["last_error"].startswith("ValueError: bug in the handler")
        # The later update of the chat waited for the dead one, then went on.
        applied = await inbox_row(pg_database, later["update_id"])
        assert applied["finished_at"] >= dead["finished_at"]
        assert await count_marks(engine, "buggy") == 0

        code, out, err = await app_command(pg_database, "inbox", "status")
        assert code == 0, err
        status = json.loads(out)
        assert status["dead"] == 1
        assert status["done"] == 1
        assert status["pending"] == 0
        assert [d["update_id"] for d in status["dead_updates"]] == [bad["update_id"]]
        assert status["dead_updates"][0]["last_error"].startswith("ValueError: bug in the handler")
        assert BOT_TOKEN not in out + err

        broken = False  # the bug is fixed (deployed)
        code, out, err = await app_command(pg_database, "inbox", "retry", str(bad["update_id"]))
        assert code == 0, err
        assert out.strip() == "1 of 1 updates are due again"
        assert await wait_for(lambda: marks_are(engine, "buggy", 1), timeout=60)
        assert (await inbox_row(pg_database, bad["update_id"]))["status"] == "done"
        assert calls == 4
        # A done update is not made due again.
        async with app.state.uow_factory() as uow:
            assert await retry_updates(uow.session, update_ids=[bad["update_id"]]) == 0
    assert await count_marks(engine, "buggy") == 1


async def test_a_429_waits_retry_after_and_holds_back_only_its_chat(pg_database: str) -> None:
    seen: list[tuple[str, float]] = []

    async def limited(run: Run) -> None:
        seen.append(("limited", time.monotonic()))
        if len([name for name, _ in seen if name == "limited"]) == 1:
            raise TelegramRetryAfter(method=A_METHOD, message="Too Many Requests", retry_after=1)

    async def follow(run: Run) -> None:
        seen.append(("follow", time.monotonic()))

    async def other(run: Run) -> None:
        seen.append(("other", time.monotonic()))

    app = scenario_app(
        pg_settings(pg_database),
        {"limited": limited, "follow": follow, "other": other},
        telegram=telegram_settings(
            processing="inbox", workers=3, poll_interval=0.05, retry_base=0.01
        ),
    )
    async with running(app) as client:
        first = message_update("limited", update_id=next_update_id(), chat_id=3001, user_id=3001)
        then = message_update("follow", update_id=next_update_id(), chat_id=3001, user_id=3001)
        elsewhere = message_update("other", update_id=next_update_id(), chat_id=3002, user_id=3002)
        for update in (first, then, elsewhere):
            assert (await post_update(client, update)).status_code == 200
        assert await wait_for(lambda: marks_are(app.state.engine, "follow", 1), timeout=60)
        row = await inbox_row(pg_database, first["update_id"])
    times: dict[str, list[float]] = {}
    for name, at in seen:
        times.setdefault(name, []).append(at)
    assert len(times["limited"]) == 2
    assert times["limited"][1] - times["limited"][0] >= 0.99  # retry_after = 1 s
    assert times["other"][0] < times["limited"][1]  # another chat went on meanwhile
    assert times["follow"][0] > times["limited"][1]  # its own chat waited
    assert row["status"] == "done"
    assert row["attempts"] == 1
    assert "TelegramRetryAfter" in row["last_error"]


async def test_a_second_worker_does_not_skip_the_backoff(pg_database: str) -> None:
    attempts: dict[int, list[float]] = {}

    async def once(run: Run) -> None:
        assert run.message is not None
        mine = attempts.setdefault(run.message.chat.id, [])
        mine.append(time.monotonic())
        if len(mine) == 1:
            raise TelegramNetworkError(method=A_METHOD, message="connection reset")

    app = scenario_app(
        pg_settings(pg_database),
        {"once": once},
        # Backoff of the first retry: at least retry_base / 2 = 0.5 s.
        telegram=telegram_settings(
            processing="inbox", workers=4, poll_interval=0.02, retry_base=1.0
        ),
    )
    chats = range(4001, 4013)
    async with running(app) as client:
        for chat in chats:
            update = message_update("once", update_id=next_update_id(), chat_id=chat, user_id=chat)
            assert (await post_update(client, update)).status_code == 200
        assert await wait_for(lambda: marks_are(app.state.engine, "once", len(chats)), timeout=60)
        rows = await pg_fetch(f"SELECT attempts FROM {INBOX}", database=pg_database)
    gaps = sorted(round(times[1] - times[0], 3) for times in attempts.values())
    assert gaps[0] >= 0.5, gaps
    assert [row["attempts"] for row in rows] == [1] * len(chats)
