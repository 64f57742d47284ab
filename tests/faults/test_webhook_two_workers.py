"""Case 5: two uvicorn worker processes behind one port; the same update posted 50 times at once.

``uvicorn --workers 2`` serves the fault app's factory with the webhook (the Bot API is a
recording session, no network). Each round posts one Telegram update 50 times concurrently,
each on a fresh connection so the kernel hands them to both workers. The update must be
applied exactly once (one ``applied`` row, one ``telegram_updates`` row), every delivery is
acknowledged with 200, and both workers took part.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from db_manager.telegram.store import TelegramUpdate
from tests.support.updates import encode, message_update
from tests.support.waiting import wait_for

from .faultapp import BOT_ID, WEBHOOK_PATH, WEBHOOK_SECRET, Applied, rows, scalar
from .helpers import UvicornProcess, faults_settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROUNDS = 4
COPIES = 50


async def test_one_update_posted_50_times_to_two_workers_is_applied_once(
    faults_db: str, uvicorn_app: Callable[..., UvicornProcess]
) -> None:
    settings = faults_settings(faults_db, pool_size=10, max_overflow=10, pool_timeout=10)
    server = uvicorn_app(settings, workers=2, telegram=True)
    assert len(server.worker_pids) == 2
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET,
    }
    answered_by: Counter[str] = Counter()
    applied_by: Counter[int] = Counter()
    update_ids = [880_000 + n for n in range(ROUNDS)]

    for round_no, update_id in enumerate(update_ids):
        body = encode(message_update(f"apply me once ({round_no})", update_id=update_id))
        # No keep-alive: every copy opens its own connection, as Telegram's retries would.
        limits = httpx.Limits(max_connections=COPIES, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post(WEBHOOK_PATH, content=body, headers=headers) for _ in range(COPIES))
            )
        assert [a.status_code for a in answers] == [200] * COPIES, [
            (a.status_code, a.text) for a in answers if a.status_code != 200
        ]
        answered_by.update(a.headers["X-Worker-Pid"] for a in answers)

        applied = await rows(
            settings,
            select(Applied.update_id, Applied.worker_pid).where(Applied.update_id == update_id),
        )
        assert len(applied) == 1, applied
        applied_by[applied[0].worker_pid] += 1
        recorded = (
            select(func.count())
            .select_from(TelegramUpdate)
            .where(TelegramUpdate.bot_id == BOT_ID, TelegramUpdate.update_id == update_id)
        )
        assert await scalar(settings, recorded) == 1

    # Both worker processes received copies of the updates.
    assert {int(pid) for pid in answered_by} == server.worker_pids, answered_by
    assert await scalar(settings, select(func.count()).select_from(Applied)) == ROUNDS

    async def pools_idle() -> bool:
        # /pool answers for whichever worker takes the connection; ask until both said 0.
        idle: set[int] = set()
        for _ in range(20):
            answer = httpx.get(f"{server.base_url}/pool", timeout=5)
            if answer.json()["checkedout"] == 0:
                idle.add(int(answer.headers["X-Worker-Pid"]))
        return idle == server.worker_pids

    assert await wait_for(pools_idle, 10)
    server.stop()
    output = server.output()
    assert "Traceback" not in output and "non-checked-in" not in output, output[-3000:]
    print(
        f"\ntwo workers: {ROUNDS} updates x {COPIES} copies; answered per worker "
        f"{dict(answered_by)}; applied per worker {dict(applied_by)}"
    )
