"""Issue 16, acceptance 2: a COMMIT whose reply is cut, then a retry with the same key.

:class:`CommitCuttingProxy` delivers the client's COMMIT to PostgreSQL, drops the server's
reply and cuts the connection: the client gets a 503 (``CommitOutcomeUnknown``), never a 2xx,
and cannot know the outcome. Two outcomes are possible and both are provoked here:

* **landed** - the server committed the payment, the key and the stored response together:
  the retry with the same key gets the original 201 back (``Idempotent-Replayed: true``) and
  the handler does not run again.
* **not landed** - the server refused the COMMIT (the ledger's ``key`` is unique and checked
  at COMMIT; the request collides with a seeded row, removed before the retry as a transient
  cause would go away): nothing of the request exists, the key included, so the retry runs
  the handler once.

In both cases the effect (the ledger row, the balance) exists exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import delete, func, select, update

from db_manager import DatabaseSettings, UnitOfWork
from db_manager.fastapi import database_lifespan, install_error_handlers
from db_manager.fastapi_idempotency import IdempotentRoute, idempotent_uow
from db_manager.idempotency import IdempotencyKey
from tests.support.pools import checked_out, observer_engine

from .faultapp import Account, FaultsModel, Ledger, TransferIn, scalar
from .helpers import CommitCuttingProxy, faults_settings, in_process

pytestmark = pytest.mark.postgres

PayUowDep = Annotated[UnitOfWork, Depends(idempotent_uow(), scope="function")]


def build_app(settings: DatabaseSettings) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(settings, metadata=FaultsModel.metadata))
    app.state.calls = 0
    install_error_handlers(app)
    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/pay", status_code=201)
    async def pay(body: TransferIn, uow: PayUowDep) -> dict[str, int]:
        app.state.calls += 1
        ledger = Ledger(key=body.key, account=body.account, amount=body.amount)
        uow.session.add(ledger)
        balance = await uow.session.scalar(
            update(Account)
            .where(Account.id == body.account)
            .values(balance=Account.balance + body.amount)
            .returning(Account.balance)
        )
        return {"ledger_id": ledger.id, "balance": int(balance or 0), "call": app.state.calls}

    app.include_router(router)
    return app


@pytest.fixture
async def proxy() -> AsyncIterator[CommitCuttingProxy]:
    proxy = CommitCuttingProxy()
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def prepare(settings: DatabaseSettings) -> None:
    engine = observer_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(IdempotencyKey.__table__.create)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def ledger_rows(settings: DatabaseSettings, key: str) -> int:
    query = select(func.count()).select_from(Ledger).where(Ledger.key == key)
    return int(await scalar(settings, query))


async def balance(settings: DatabaseSettings, account: int) -> int:
    return int(await scalar(settings, select(Account.balance).where(Account.id == account)))


async def key_rows(settings: DatabaseSettings, key: str) -> int:
    query = select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)
    return int(await scalar(settings, query))


async def test_a_cut_commit_that_landed_is_replayed_on_retry(
    faults_db: str, proxy: CommitCuttingProxy
) -> None:
    direct = faults_settings(faults_db)
    await prepare(direct)
    app = build_app(faults_settings(faults_db, port=proxy.port, pool_size=2))
    headers = {"Idempotency-Key": "pay-landed"}
    body = {"key": "landed", "account": 2, "amount": 30}
    async with in_process(app) as client:
        proxy.arm(1)
        first = await client.post("/pay", json=body, headers=headers)
        assert proxy.cuts == 1
        assert first.status_code == 503, first.text  # never a 2xx for an unknown outcome
        assert first.json()["error"] == "database_unavailable"
        # The server did commit: the effect and the key with its response.
        assert await ledger_rows(direct, "landed") == 1
        assert await key_rows(direct, "pay-landed") == 1

        retry = await client.post("/pay", json=body, headers=headers)
        assert checked_out(app) == 0

    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == {"ledger_id": retry.json()["ledger_id"], "balance": 30, "call": 1}
    assert app.state.calls == 1  # the handler did not run again
    assert await ledger_rows(direct, "landed") == 1
    assert await balance(direct, 2) == 30


async def test_a_cut_commit_that_did_not_land_runs_once_on_retry(
    faults_db: str, proxy: CommitCuttingProxy
) -> None:
    direct = faults_settings(faults_db)
    await prepare(direct)
    app = build_app(faults_settings(faults_db, port=proxy.port, pool_size=2))
    headers = {"Idempotency-Key": "pay-lost"}
    body = {"key": "seed-3", "account": 3, "amount": 40}  # collides with a seeded ledger row
    async with in_process(app) as client:
        proxy.arm(1)
        first = await client.post("/pay", json=body, headers=headers)
        assert proxy.cuts == 1
        assert first.status_code == 503, first.text
        # The server refused the COMMIT: no trace of the request, its key included.
        assert await key_rows(direct, "pay-lost") == 0
        assert await balance(direct, 3) == 0

        engine = observer_engine(direct)
        try:
            async with engine.begin() as conn:  # the cause goes away before the retry
                await conn.execute(delete(Ledger).where(Ledger.key == "seed-3"))
        finally:
            await engine.dispose()

        retry = await client.post("/pay", json=body, headers=headers)
        again = await client.post("/pay", json=body, headers=headers)
        assert checked_out(app) == 0

    assert retry.status_code == 201, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == retry.content
    assert app.state.calls == 2  # the lost attempt and the retry; the repeat was replayed
    assert await ledger_rows(direct, "seed-3") == 1
    assert await balance(direct, 3) == 40
