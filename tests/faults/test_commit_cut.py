"""Case 7: the connection breaks after COMMIT reached the server, before its answer came back.

A proxy between the app and PostgreSQL delivers the client's COMMIT (asyncpg sends
``Transaction.commit()`` as a simple ``Query`` message ``COMMIT;``) and cuts the connection
before relaying the reply. The server has committed; the client must not claim success: the
answer is a 503 (``CommitOutcomeUnknown``), never a 2xx. The row did land, which is exactly
why the outcome is "unknown" rather than "failed". For the webhook, Telegram's retry of the
same update is then acknowledged without applying it a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from tests.support.pools import checked_out
from tests.support.updates import encode, message_update

from .faultapp import WEBHOOK_PATH, WEBHOOK_SECRET, Applied, Ledger, build_app, rows, scalar
from .helpers import CommitCuttingProxy, faults_settings, in_process

pytestmark = pytest.mark.postgres


@pytest.fixture
async def proxy() -> AsyncIterator[CommitCuttingProxy]:
    proxy = CommitCuttingProxy()
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def transfer(key: str) -> dict[str, object]:
    return {"key": key, "account": 1, "amount": 10}


async def ledger_keys(settings: object, prefix: str) -> set[str]:
    found = await rows(settings, select(Ledger.key).where(Ledger.key.like(f"{prefix}%")))  # type: ignore[arg-type]
    return {row[0] for row in found}


async def test_a_cut_commit_is_answered_503_never_2xx(
    faults_db: str, proxy: CommitCuttingProxy
) -> None:
    settings = faults_settings(faults_db, port=proxy.port, pool_size=3, max_overflow=2)
    direct = faults_settings(faults_db)
    app = build_app(settings)
    async with in_process(app) as client:
        warm = await client.post("/transfer", json=transfer("warm"))
        assert warm.status_code == 201, warm.text
        # asyncpg's COMMIT is a simple-protocol Query message; the proxy saw it.
        assert ("Q", "COMMIT;") in proxy.messages, proxy.messages[-10:]

        for i in range(5):
            proxy.arm(1)
            with capture_logs() as logs:
                answer = await client.post("/transfer", json=transfer(f"cut-{i}"))
            assert [e.get("error_type") for e in logs if e["event"] == "database unavailable"] == [
                "CommitOutcomeUnknown"
            ], logs
            assert proxy.armed == 0, "the proxy never saw the COMMIT"
            assert answer.status_code == 503, (answer.status_code, answer.text)
            assert answer.headers.get("Retry-After") == "1"
            assert answer.json()["error"] == "database_unavailable"
            # The client was not told success; and yet the server did commit.
            assert f"cut-{i}" in await ledger_keys(direct, f"cut-{i}")
            assert checked_out(app) == 0

            after = await client.post("/transfer", json=transfer(f"after-{i}"))
            assert after.status_code == 201, after.text

        assert proxy.cuts == 5 and proxy.replies_dropped == 5
        assert checked_out(app) == 0


async def test_concurrent_cut_commits_never_report_success(
    faults_db: str, proxy: CommitCuttingProxy
) -> None:
    settings = faults_settings(faults_db, port=proxy.port, pool_size=5, max_overflow=5)
    direct = faults_settings(faults_db)
    app = build_app(settings)
    async with in_process(app) as client:
        assert (await client.post("/transfer", json=transfer("warm"))).status_code == 201
        proxy.arm(10)
        answers = await asyncio.gather(
            *(client.post("/transfer", json=transfer(f"many-{i}")) for i in range(20))
        )
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {201, 503}, [a.text for a in answers if a.status_code >= 500]
        assert statuses.count(503) == proxy.cuts == 10, statuses
        # Every request committed on the server, whatever its client heard.
        assert await ledger_keys(direct, "many-") == {f"many-{i}" for i in range(20)}
        assert checked_out(app) == 0


async def test_webhook_commit_cut_is_retried_and_applied_once(
    faults_db: str, proxy: CommitCuttingProxy
) -> None:
    settings = faults_settings(faults_db, port=proxy.port, pool_size=3, max_overflow=2)
    direct = faults_settings(faults_db)
    app = build_app(settings, telegram=True)
    update = message_update("pay me once", update_id=777_001)
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET,
    }
    async with in_process(app) as client:
        proxy.arm(1)
        first = await client.post(WEBHOOK_PATH, content=encode(update), headers=headers)
        assert proxy.cuts == 1
        assert first.status_code == 503, first.text  # Telegram will redeliver
        assert first.headers.get("Retry-After")
        applied = select(func.count()).select_from(Applied).where(Applied.update_id == 777_001)
        assert await scalar(direct, applied) == 1  # it did commit

        retry = await client.post(WEBHOOK_PATH, content=encode(update), headers=headers)
        assert retry.status_code == 200, retry.text
        assert await scalar(direct, applied) == 1  # acknowledged, not applied again
        assert checked_out(app) == 0
