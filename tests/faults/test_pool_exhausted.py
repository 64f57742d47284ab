"""Case 4: the pool is exhausted by slow requests.

``pool_size = 2``, ``max_overflow = 0``, ``pool_timeout = 1``; 20 requests each hold a
connection for 2 s (``pg_sleep(2)``). Two of them get the connections and succeed; the others
wait ``pool_timeout`` and are answered 503 with ``Retry-After`` (``PoolExhausted``), not left
hanging and not 500. Meanwhile ``/health/ready`` still answers within its own timeout, and a
webhook update is answered 503 with ``Retry-After`` (then applied once when redelivered).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from tests.support.pools import checked_out
from tests.support.updates import encode, message_update
from tests.support.waiting import wait_for

from .faultapp import WEBHOOK_PATH, WEBHOOK_SECRET, Applied, build_app, scalar
from .helpers import faults_settings, in_process

pytestmark = pytest.mark.postgres

REQUESTS = 20
SLEEP = 2.0
POOL_TIMEOUT = 1.0
READY_TIMEOUT = 2.0
UPDATE_ID = 660_001


async def test_waiting_requests_get_503_after_pool_timeout(faults_db: str) -> None:
    settings = faults_settings(faults_db, pool_size=2, max_overflow=0, pool_timeout=POOL_TIMEOUT)
    app = build_app(settings, ready_timeout=READY_TIMEOUT, telegram=True)
    body = encode(message_update("while the pool is exhausted", update_id=UPDATE_ID))
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET,
    }
    async with in_process(app) as client:
        assert (await client.get("/health/ready")).status_code == 200  # warm both pools

        async def timed(path: str) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            answer = await client.get(path)
            return answer, time.monotonic() - started

        with capture_logs() as logs:
            slow = [asyncio.create_task(timed(f"/sleep?seconds={SLEEP}")) for _ in range(REQUESTS)]

            async def exhausted() -> bool:
                return checked_out(app) == 2

            assert await wait_for(exhausted, 5, interval=0.01)
            ready_task = asyncio.create_task(timed("/health/ready"))
            started = time.monotonic()
            update = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            update_took = time.monotonic() - started
            ready, ready_took = await ready_task
            results = await asyncio.gather(*slow)

        # The health check answered within its timeout (the read pool is separate, so it is
        # usually 200; a 503 is allowed, a hang is not).
        assert ready.status_code in (200, 503), ready.text
        assert ready_took < READY_TIMEOUT + 1.5, ready_took

        ok = [took for answer, took in results if answer.status_code == 200]
        refused = [(answer, took) for answer, took in results if answer.status_code == 503]
        assert len(ok) + len(refused) == REQUESTS, [a.status_code for a, _ in results]
        assert len(ok) == 2, [a.status_code for a, _ in results]
        assert all(took >= SLEEP - 0.1 for took in ok), ok
        for answer, took in refused:
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["error"] == "database_unavailable"
            # Waited for the pool (pool_timeout), then gave up: not at once, not forever.
            assert POOL_TIMEOUT - 0.1 <= took < POOL_TIMEOUT + 5, took
        kinds = {e.get("error_type") for e in logs if e["event"] == "database unavailable"}
        assert kinds == {"PoolExhausted"}, logs

        # The webhook: 503 with Retry-After too (Telegram redelivers), applied once later.
        assert update.status_code == 503, update.text
        assert update.headers.get("Retry-After") == "1"
        assert POOL_TIMEOUT - 0.1 <= update_took < POOL_TIMEOUT + 5, update_took
        redelivered = await client.post(WEBHOOK_PATH, content=body, headers=headers)
        assert redelivered.status_code == 200, redelivered.text
        applied = select(func.count()).select_from(Applied).where(Applied.update_id == UPDATE_ID)
        assert await scalar(settings, applied) == 1

        assert checked_out(app) == 0
        again = await client.get("/sleep?seconds=0")
        assert again.status_code == 200
        assert checked_out(app) == 0
    print(
        f"\npool exhausted: {len(ok)} x 200, {len(refused)} x 503 after "
        f"{min(t for _, t in refused):.2f}-{max(t for _, t in refused):.2f} s; "
        f"/health/ready {ready.status_code} in {ready_took:.3f} s"
    )
