"""Case 1: PostgreSQL restarts (``pg_ctl stop -m fast``, then ``start``) under 50 clients.

The server is a cluster of this test's own (the shared one is never touched); the app runs
under real uvicorn in a subprocess. 50 clients keep sending writes and reads before, during
and after the outage.

* During the outage every request is answered 503 with ``Retry-After``: quickly, never a
  hang, never a 500.
* Once the server is back, every request succeeds within 5 s (the pool's pre-ping replaces
  the dead connections).
* Afterwards no connection is checked out (``/pool``), none is ``idle in transaction``, and
  the committed bumps match the answers (each 2xx bump is there; a bump answered 503 may be
  there only if its COMMIT was in flight when the server went down).
* 10 of the 50 clients play Telegram: they post updates to the webhook and, like Telegram,
  redeliver an update until it is acknowledged with 200. Every update ends up applied
  exactly once, also those whose first delivery failed during the outage.
* ``/health/ready`` is polled throughout: 503 while the server is down, 200 once it is back,
  never slower than its timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from tests.support.updates import encode, message_update
from tests.support.waiting import wait_for

from .faultapp import WEBHOOK_PATH, WEBHOOK_SECRET, Applied, Item, rows, scalar
from .helpers import (
    PostgresServer,
    UvicornProcess,
    app_backends,
    faults_settings,
    idle_in_transaction,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 50
TELEGRAM_CLIENTS = 10  # of the 50
READY_TIMEOUT = 2.0
BEFORE = 1.5  # seconds of steady load before the restart
# Seconds the server stays down: longer than READY_TIMEOUT, since a readiness check waits up
# to its timeout for the server, so one that began just before the stop still answers (503)
# inside the outage.
OUTAGE = 3.0
AFTER = 6.5  # seconds of load after it is back
RECOVERY_LIMIT = 5.0
HANG_LIMIT = 8.0


@dataclass(frozen=True)
class Sent:
    started: float
    finished: float
    kind: str  # "bump", "read", "reader", "webhook" or "ready"
    status: str  # "200", "503", ... or the transport error's name
    retry_after: str | None


async def test_requests_during_and_after_a_postgres_restart(
    own_postgres: PostgresServer,
    own_postgres_db: str,
    uvicorn_app: Callable[..., UvicornProcess],
) -> None:
    settings = faults_settings(
        own_postgres_db,
        port=own_postgres.port,
        pool_size=10,
        max_overflow=10,
        pool_timeout=5,
        connect_timeout=2,
    )
    server = uvicorn_app(settings, telegram=True, ready_timeout=READY_TIMEOUT)
    sent: list[Sent] = []
    health: list[Sent] = []
    acknowledged: list[int] = []
    update_ids = itertools.count(990_000_001)
    running = True

    async def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=HANG_LIMIT + 2, limits=limits
        ) as client:
            while running:
                roll = rng.random()
                kind = "bump" if roll < 0.6 else "read" if roll < 0.8 else "reader"
                item = rng.randint(1, 100)
                started = time.monotonic()
                retry_after = None
                try:
                    if kind == "bump":
                        answer = await client.post(f"/items/{item}/bump")
                    elif kind == "read":
                        answer = await client.get(f"/items/{item}")
                    else:  # the read path (ReaderDep): autocommit, retried once, no pre-ping
                        answer = await client.get(f"/read/items/{item}")
                    status = str(answer.status_code)
                    retry_after = answer.headers.get("Retry-After")
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                sent.append(Sent(started, time.monotonic(), kind, status, retry_after))
                await asyncio.sleep(0.01 if status == "200" else 0.05)

    async def telegram_loop() -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET,
        }
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=HANG_LIMIT + 2, limits=limits
        ) as client:
            while running:
                update_id = next(update_ids)
                body = encode(message_update(f"update {update_id}", update_id=update_id))
                deadline = time.monotonic() + BEFORE + OUTAGE + AFTER + 10
                # Like Telegram: redeliver until the update is acknowledged.
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    retry_after = None
                    try:
                        answer = await client.post(WEBHOOK_PATH, content=body, headers=headers)
                        status = str(answer.status_code)
                        retry_after = answer.headers.get("Retry-After")
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    sent.append(Sent(started, time.monotonic(), "webhook", status, retry_after))
                    if status == "200":
                        acknowledged.append(update_id)
                        break
                    await asyncio.sleep(0.1)

    async def health_loop() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_LIMIT + 2) as client:
            while running:
                started = time.monotonic()
                try:
                    status = str((await client.get("/health/ready")).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                health.append(Sent(started, time.monotonic(), "ready", status, None))
                await asyncio.sleep(0.1)

    clients = [asyncio.create_task(client_loop(seed)) for seed in range(CLIENTS - TELEGRAM_CLIENTS)]
    clients += [asyncio.create_task(telegram_loop()) for _ in range(TELEGRAM_CLIENTS)]
    clients.append(asyncio.create_task(health_loop()))
    try:
        await asyncio.sleep(BEFORE)
        stopping = time.monotonic()
        await asyncio.to_thread(own_postgres.stop, "fast")
        down = time.monotonic()
        await asyncio.sleep(OUTAGE)
        starting = time.monotonic()
        await asyncio.to_thread(own_postgres.start)
        back = time.monotonic()
        await asyncio.sleep(AFTER)
    finally:
        running = False
        await asyncio.gather(*clients)

    unexpected = [
        (s.kind, s.status, round(s.started - stopping, 2), round(s.finished - stopping, 2))
        for s in sent
        if s.status not in {"200", "503"}
    ]
    assert not unexpected, (
        f"{Counter(s.status for s in sent)}; unexpected (kind, status, started and finished"
        f" in s after the stop began): {unexpected[:10]}; server log:\n{server.output()[-6000:]}"
    )
    longest = max(s.finished - s.started for s in sent)
    assert longest < HANG_LIMIT, longest

    during = [s for s in sent if down <= s.started and s.finished <= starting]
    assert during, "no request was sent while the server was down"
    assert {s.status for s in during} == {"503"}
    assert all(s.retry_after == "1" for s in sent if s.status == "503")

    after = [s for s in sent if s.started >= back + RECOVERY_LIMIT]
    assert len(after) >= CLIENTS, len(after)
    assert {s.status for s in after} == {"200"}, [s for s in after if s.status != "200"][:5]
    failed_after = [s for s in sent if s.started >= back and s.status != "200"]
    recovered_in = max((s.finished for s in failed_after), default=back) - back

    # The health check: never slower than its timeout; 503 while down, 200 once back.
    assert {h.status for h in health} <= {"200", "503"}
    assert max(h.finished - h.started for h in health) < READY_TIMEOUT + 1.5
    # What a load balancer sees while the server is down: every answer given then is 503.
    during_outage = [h for h in health if down <= h.finished <= starting]
    assert {h.status for h in during_outage} == {"503"}, [
        (round(h.started - down, 2), round(h.finished - down, 2), h.status) for h in health
    ]
    assert {h.status for h in health if h.started >= back + RECOVERY_LIMIT} == {"200"}

    # Every update was acknowledged in the end and applied exactly once.
    webhook = [s for s in sent if s.kind == "webhook"]
    assert any(s.status == "503" for s in webhook), "no update delivery hit the outage"
    applied = await rows(
        faults_settings(own_postgres_db, port=own_postgres.port),
        select(Applied.update_id, func.count()).group_by(Applied.update_id),
    )
    assert len(acknowledged) == len(set(acknowledged)) >= TELEGRAM_CLIENTS
    assert {update_id: n for update_id, n in applied} == dict.fromkeys(acknowledged, 1)
    redelivered = sum(1 for s in webhook if s.status != "200")

    # No leaks: nothing checked out, nothing left in an open transaction.
    async def pool_idle() -> bool:
        return server.pool()["checkedout"] == 0

    assert await wait_for(pool_idle, 10), server.pool()

    async def no_open_transactions() -> bool:
        return not await idle_in_transaction(
            own_postgres_db, port=own_postgres.port, admin_db=own_postgres_db
        )

    assert await wait_for(no_open_transactions, 10)
    backends = await app_backends(
        settings.application_name, port=own_postgres.port, admin_db=own_postgres_db
    )
    assert len(backends) <= settings.pool_size + settings.max_overflow + 5, backends

    server.stop()
    output = server.output()
    assert "non-checked-in" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]

    # What committed matches what the clients were told.
    bumps_ok = sum(1 for s in sent if s.kind == "bump" and s.status == "200")
    bumps_503 = sum(1 for s in sent if s.kind == "bump" and s.status == "503")
    total = await scalar(
        faults_settings(own_postgres_db, port=own_postgres.port), select(func.sum(Item.counter))
    )
    assert bumps_ok <= total <= bumps_ok + bumps_503, (bumps_ok, bumps_503, total)

    ok = sum(1 for s in sent if s.status == "200")
    unavailable = sum(1 for s in sent if s.status == "503")
    print(
        f"\npostgres restart: stop took {down - stopping:.2f} s, down {starting - down:.2f} s, "
        f"start took {back - starting:.2f} s; {len(sent)} requests: {ok} x 200, "
        f"{unavailable} x 503 ({len(during)} sent while down, all 503); "
        f"last failure {recovered_in:.2f} s after the server was back; "
        f"longest request {longest:.2f} s; committed bumps {total} "
        f"(200: {bumps_ok}, 503: {bumps_503}); {len(acknowledged)} updates applied once "
        f"after {redelivered} failed deliveries; /health/ready "
        f"{dict(Counter(h.status for h in health))}"
    )
