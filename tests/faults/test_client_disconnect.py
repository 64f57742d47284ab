"""Case 3: clients that hang up mid-request, under load, against real uvicorn.

40 clients send a mix of slow writes (``pg_sleep`` inside the transaction), slow reads and
quick writes; most slow requests are abandoned by their client after a random 20-500 ms
(the client closes the socket). Run twice: with plain uvicorn (the handler runs on after the
client left) and with a cancel-on-disconnect middleware (the handler is cancelled mid-query,
which is what the UnitOfWork's shielded cleanup is for).

Afterwards: the pool's checked-out count is back to 0 (the ``/pool`` route of the server
process), no backend of the app is left ``idle in transaction``, no "non-checked-in
connection" warning was printed, no request got a 500, and what committed is consistent
(each ledger row moved its account's balance).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from tests.support.waiting import wait_for

from .faultapp import Account, Ledger, scalar
from .helpers import UvicornProcess, app_backends, faults_settings, idle_in_transaction

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 40
REQUESTS_PER_CLIENT = 6
SEED = 7_300_003


@pytest.mark.parametrize("cancel_on_disconnect", [False, True], ids=["plain", "cancelling"])
async def test_disconnecting_clients_leave_no_connection_behind(
    faults_db: str, uvicorn_app: Callable[..., UvicornProcess], cancel_on_disconnect: bool
) -> None:
    settings = faults_settings(faults_db, pool_size=10, max_overflow=10, pool_timeout=10)
    server = uvicorn_app(settings, cancel_on_disconnect=cancel_on_disconnect)
    rng = random.Random(SEED)
    keys = itertools.count()
    outcomes: dict[str, int] = {}

    def plan() -> tuple[str, str, dict[str, object] | None, float]:
        roll = rng.random()
        hang_up = rng.uniform(0.02, 0.5)
        seconds = round(rng.uniform(0.05, 0.6), 3)
        if roll < 0.45:
            body = {"key": f"d-{next(keys)}", "account": rng.randint(1, 10), "amount": 7}
            return "POST", f"/transfer/slow?seconds={seconds}", body, hang_up
        if roll < 0.8:
            return "GET", f"/sleep?seconds={seconds}", None, hang_up
        return "POST", f"/items/{rng.randint(1, 100)}/bump", None, 10.0

    plans = [[plan() for _ in range(REQUESTS_PER_CLIENT)] for _ in range(CLIENTS)]

    async def client_loop(steps: list[tuple[str, str, dict[str, object] | None, float]]) -> None:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for method, path, body, hang_up in steps:
                try:
                    answer = await client.request(
                        method, path, json=body, timeout=httpx.Timeout(hang_up, connect=5)
                    )
                except httpx.TimeoutException:
                    key = "hung up"
                else:
                    key = str(answer.status_code)
                outcomes[key] = outcomes.get(key, 0) + 1

    await asyncio.gather(*(client_loop(steps) for steps in plans))
    assert outcomes.get("hung up", 0) >= CLIENTS, outcomes
    assert set(outcomes) <= {"hung up", "200", "201"}, outcomes

    async def pool_idle() -> bool:
        return server.pool()["checkedout"] == 0

    # Handlers of abandoned requests may still be finishing their pg_sleep (plain uvicorn).
    assert await wait_for(pool_idle, 15), server.pool()

    async def no_open_transactions() -> bool:
        return not await idle_in_transaction(faults_db)

    assert await wait_for(no_open_transactions, 10), await idle_in_transaction(faults_db)
    backends = await app_backends(settings.application_name)
    assert all(b["state"] in ("idle", None) for b in backends), backends
    assert len(backends) <= settings.pool_size + settings.max_overflow + 5

    if cancel_on_disconnect:
        # The handler really is cancelled mid-query: a 20 s pg_sleep whose client hangs up
        # after 0.3 s is gone from the server, and its connection back, within a few seconds.
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            with pytest.raises(httpx.TimeoutException):
                await client.get("/sleep?seconds=20", timeout=httpx.Timeout(0.3, connect=5))

        async def sleep_stopped() -> bool:
            active = await app_backends(settings.application_name)
            return server.pool()["checkedout"] == 0 and not any(
                "pg_sleep" in (b["query"] or "") and b["state"] == "active" for b in active
            )

        assert await wait_for(sleep_stopped, 5), await app_backends(settings.application_name)

    server.stop()
    output = server.output()
    assert "non-checked-in" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]

    balances = await scalar(settings, select(func.sum(Account.balance)))
    ledger = await scalar(settings, select(func.coalesce(func.sum(Ledger.amount), 0)))
    assert balances == ledger
    print(f"\n{'cancelling' if cancel_on_disconnect else 'plain'}: {outcomes}")
