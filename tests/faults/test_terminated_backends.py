"""Case 2: every server backend of the app is killed (``pg_terminate_backend``) between requests.

The pooled connections (main pool and read pool) are dead when the next requests take them;
``pool_pre_ping`` (and the read path's retry-once) must notice and reconnect, so the next requests all succeed: no 503,
no 500.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from tests.support.pools import checked_out
from tests.support.postgres import pg_fetch
from tests.support.waiting import wait_for

from .faultapp import Item, build_app, scalar
from .helpers import app_backends, faults_settings, in_process

pytestmark = pytest.mark.postgres

ROUNDS = 3
CONCURRENCY = 10


async def test_requests_after_all_backends_were_terminated_succeed(faults_db: str) -> None:
    settings = faults_settings(faults_db, pool_size=5, max_overflow=5)
    app = build_app(settings)
    name = settings.application_name
    bumps = 0
    statuses: list[int] = []
    async with in_process(app) as client:
        for round_no in range(ROUNDS):
            # Fill the pools (main and read) with live connections.
            warm = await asyncio.gather(
                *(client.post(f"/items/{i}/bump") for i in range(1, CONCURRENCY + 1)),
                *(client.get(f"/read/items/{i}") for i in range(1, CONCURRENCY + 1)),
                client.get("/health/ready"),
            )
            assert [r.status_code for r in warm] == [200] * (2 * CONCURRENCY + 1), [
                r.text for r in warm
            ]
            bumps += CONCURRENCY
            before = await app_backends(name)
            assert len(before) >= 2, before
            assert checked_out(app) == 0

            killed = await pg_fetch(
                "SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                name,
            )
            assert killed and all(row["ok"] for row in killed), killed

            async def gone() -> bool:
                return not await app_backends(name)

            assert await wait_for(gone, 10), await app_backends(name)

            # The next request on its own, then a concurrent burst, then the health check.
            first = await client.post("/items/1/bump")
            statuses.append(first.status_code)
            assert first.status_code == 200, (round_no, first.status_code, first.text)
            bumps += 1
            burst = await asyncio.gather(
                *(client.post(f"/items/{i}/bump") for i in range(1, CONCURRENCY + 1)),
                *(client.get(f"/items/{i}") for i in range(1, CONCURRENCY + 1)),
                *(client.get(f"/read/items/{i}") for i in range(1, CONCURRENCY + 1)),
            )
            statuses += [r.status_code for r in burst]
            assert [r.status_code for r in burst] == [200] * (3 * CONCURRENCY), [
                (r.status_code, r.text) for r in burst if r.status_code != 200
            ]
            bumps += CONCURRENCY
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            assert checked_out(app) == 0

        assert len(await app_backends(name)) <= settings.pool_size + settings.max_overflow + 5

    assert statuses.count(200) == len(statuses)
    assert await scalar(settings, select(func.sum(Item.counter))) == bumps
