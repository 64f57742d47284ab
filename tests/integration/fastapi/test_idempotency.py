"""Issue 16: idempotency keys in the request's transaction (acceptance 1, 3 and 4), both backends.

A small real app: ``POST /charges`` inserts one charge row (the effect) and answers 201 with a
``Location`` header; ``POST /refunds`` is a second route (same router) to reuse a key on
another path; ``POST /charges/flaky`` inserts a charge, then raises while ``app.state.fail``
is set. The client identity is the ``X-Client`` header. Effects and key rows are read through
connections of their own, never the app's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import MetaData, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings, UnitOfWork
from db_manager.fastapi import database_lifespan, install_error_handlers
from db_manager.fastapi_idempotency import (
    IDEMPOTENCY_RESPONSES,
    IdempotentRoute,
    idempotent_uow,
)
from db_manager.idempotency import IdempotencyKey, prune_idempotency_keys


class IdemTestModel(Base):
    __abstract__ = True
    __plugin__ = "idem_test"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Charge(IdemTestModel):
    __tablename__ = "charges"

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[int]
    amount: Mapped[int]


class ChargeIn(BaseModel):
    account: int
    amount: int


def client_identity(request: Request) -> str:
    return request.headers.get("x-client", "nobody")


IdemUowDep = Annotated[
    UnitOfWork, Depends(idempotent_uow(identity=client_identity), scope="function")
]


def build_app(settings: DatabaseSettings) -> FastAPI:
    tables = [cast(Table, Charge.__table__), cast(Table, IdempotencyKey.__table__)]
    metadata = MetaData()
    for table in tables:
        table.to_metadata(metadata)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database_lifespan(settings, metadata=metadata)(app):
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.calls = 0
    app.state.fail = False
    install_error_handlers(app)
    router = APIRouter(route_class=IdempotentRoute)

    async def charge(body: ChargeIn, uow: UnitOfWork, request: Request) -> JSONResponse:
        app.state.calls += 1
        row = Charge(account=body.account, amount=body.amount)
        uow.session.add(row)
        await uow.session.flush()
        hold = float(request.query_params.get("hold", "0"))
        if hold:
            await asyncio.sleep(hold)  # keep the transaction open, so repeats overlap it
        return JSONResponse(
            {"id": row.id, "amount": row.amount, "calls": app.state.calls},
            status_code=201,
            headers={"Location": f"/charges/{row.id}", "X-Request-Only": "x"},
        )

    @router.post("/charges", status_code=201, responses=IDEMPOTENCY_RESPONSES)
    async def create_charge(body: ChargeIn, uow: IdemUowDep, request: Request) -> JSONResponse:
        return await charge(body, uow, request)

    @router.post("/refunds", status_code=201)
    async def create_refund(body: ChargeIn, uow: IdemUowDep, request: Request) -> JSONResponse:
        return await charge(body, uow, request)

    @router.post("/charges/flaky", status_code=201)
    async def flaky(body: ChargeIn, uow: IdemUowDep, request: Request) -> JSONResponse:
        response = await charge(body, uow, request)
        if app.state.fail == "http":
            raise HTTPException(400, "refused after the write")
        if app.state.fail:
            raise RuntimeError("a bug after the write")
        return response

    @router.post("/charges/early-commit", status_code=201)
    async def early_commit(body: ChargeIn, uow: IdemUowDep, request: Request) -> JSONResponse:
        response = await charge(body, uow, request)
        await uow.commit()  # commits the key without its response: repeats now get 409
        await asyncio.sleep(0.5)
        return response

    @router.post("/charges/stream")
    async def stream(uow: IdemUowDep) -> StreamingResponse:
        uow.session.add(Charge(account=9, amount=9))
        await uow.session.flush()
        return StreamingResponse(iter([b"cannot be stored"]))

    app.include_router(router)

    @app.post("/charges/plain-route")
    async def plain_route(uow: IdemUowDep) -> dict[str, str]:
        return {"status": "never"}

    return app


@asynccontextmanager
async def running(settings: DatabaseSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = build_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://idem", timeout=30) as client,
    ):
        yield app, client


def observer(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(settings.sqlalchemy_url, poolclass=NullPool)


async def count(settings: DatabaseSettings, query: Any) -> int:
    engine = observer(settings)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)
    finally:
        await engine.dispose()


def charges() -> Any:
    return select(func.count()).select_from(Charge)


def keys() -> Any:
    return select(func.count()).select_from(IdempotencyKey)


def key(value: str, client: str = "alice") -> dict[str, str]:
    return {"Idempotency-Key": value, "X-Client": client}


BODY = {"account": 1, "amount": 10}


# -- 1. concurrent repeats ------------------------------------------------------------------------


async def test_twenty_concurrent_posts_with_one_key_apply_once(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True, "pool_size": 20})
    async with running(settings) as (app, client):
        answers = await asyncio.gather(
            *(client.post("/charges?hold=0.2", json=BODY, headers=key("race-1")) for _ in range(20))
        )
        assert app.state.engine.pool.checkedout() == 0

    assert [a.status_code for a in answers] == [201] * 20, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    assert answers[0].json()["calls"] == 1
    replayed = [a.headers.get("Idempotent-Replayed") for a in answers]
    assert replayed.count("true") == 19 and replayed.count(None) == 1
    assert app.state.calls == 1
    assert await count(settings, charges()) == 1
    assert await count(settings, keys()) == 1


# -- replay -----------------------------------------------------------------------------------------


async def test_a_repeat_gets_the_stored_response_and_the_handler_does_not_run(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        first = await client.post("/charges", json=BODY, headers=key("k-1"))
        again = await client.post("/charges", json=BODY, headers=key("k-1"))

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["Location"] == first.headers["Location"] == "/charges/1"
    assert again.headers["content-type"] == "application/json"
    assert "X-Request-Only" not in again.headers  # only the headers that matter are stored
    assert app.state.calls == 1
    assert await count(settings, charges()) == 1


async def test_keys_belong_to_one_client_and_requests_without_a_key_always_run(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        alice = await client.post("/charges", json=BODY, headers=key("shared", "alice"))
        bob = await client.post("/charges", json=BODY, headers=key("shared", "bob"))
        plain = [await client.post("/charges", json=BODY) for _ in range(2)]

    assert alice.status_code == bob.status_code == 201
    assert "Idempotent-Replayed" not in bob.headers
    assert [p.status_code for p in plain] == [201, 201]
    assert app.state.calls == 4
    assert await count(settings, charges()) == 4
    assert await count(settings, keys()) == 2  # no row for a request without a key


# -- 3. a handler that raises ---------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["bug", "http"])
async def test_a_handler_that_raises_stores_no_key_and_the_retry_runs(
    db_settings: DatabaseSettings, failure: str
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        app.state.fail = failure
        failed = await client.post("/charges/flaky", json=BODY, headers=key("flaky"))
        assert failed.status_code == (500 if failure == "bug" else 400)
        assert await count(settings, keys()) == 0
        assert await count(settings, charges()) == 0

        app.state.fail = False
        retry = await client.post("/charges/flaky", json=BODY, headers=key("flaky"))

    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    assert app.state.calls == 2
    assert await count(settings, charges()) == 1
    assert await count(settings, keys()) == 1


# -- 4. misuse and expiry ------------------------------------------------------------------------


async def test_the_same_key_with_another_body_or_path_is_422(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        first = await client.post("/charges", json=BODY, headers=key("once"))
        other_body = await client.post(
            "/charges", json={"account": 1, "amount": 99}, headers=key("once")
        )
        other_path = await client.post("/refunds", json=BODY, headers=key("once"))

    assert first.status_code == 201
    for answer in (other_body, other_path):
        assert answer.status_code == 422, answer.text
        assert "already used with another method, path or body" in answer.json()["detail"]
    assert app.state.calls == 1
    assert await count(settings, charges()) == 1


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_malformed_key_is_400_and_writes_nothing(
    db_settings: DatabaseSettings, bad: str
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        raw = [(b"idempotency-key", bad.encode()), (b"content-type", b"application/json")]
        answer = await client.post("/charges", content=b'{"account": 1, "amount": 1}', headers=raw)

    assert answer.status_code == 400, answer.text
    assert "1 to 255 printable ASCII" in answer.json()["detail"]
    assert app.state.calls == 0
    assert await count(settings, charges()) == 0


async def test_an_expired_key_is_treated_as_new_and_prune_deletes_expired_keys(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        first = await client.post("/charges", json=BODY, headers=key("old"))
        await client.post("/charges", json=BODY, headers=key("fresh"))
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        engine = observer(settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.key == "old")
                    .values(expires_at=past)
                )
        finally:
            await engine.dispose()

        again = await client.post("/charges", json=BODY, headers=key("old"))
        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again.headers
        assert again.json()["id"] != first.json()["id"]
        assert app.state.calls == 3

        async with app.state.uow_factory() as uow:
            assert await prune_idempotency_keys(uow.session) == 0  # none expired now
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
        async with app.state.uow_factory() as uow:
            assert await prune_idempotency_keys(uow.session, now=later) == 2
    assert await count(settings, keys()) == 0
    assert await count(settings, charges()) == 3


def test_the_key_table_joins_base_metadata_only_when_imported_without_fastapi() -> None:
    code = (
        "import sys, db_manager\n"
        "print('before', 'db_manager__idempotency_keys' in db_manager.Base.metadata.tables)\n"
        "import db_manager.idempotency\n"
        "print('after', 'db_manager__idempotency_keys' in db_manager.Base.metadata.tables)\n"
        "print('frameworks', [m for m in ('fastapi', 'starlette') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["before False", "after True", "frameworks []"]


# -- the edges --------------------------------------------------------------------------------------


async def test_a_repeat_after_an_early_commit_is_409_with_retry_after_then_replayed(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (app, client):
        first = asyncio.create_task(
            client.post("/charges/early-commit", json=BODY, headers=key("early"))
        )
        await asyncio.sleep(0.25)  # the first has committed its key and is still running
        during = await client.post("/charges/early-commit", json=BODY, headers=key("early"))
        original = await first
        after = await client.post("/charges/early-commit", json=BODY, headers=key("early"))

    assert during.status_code == 409 and during.headers["Retry-After"] == "1"
    assert "has not finished" in during.json()["detail"]
    assert original.status_code == after.status_code == 201
    assert after.content == original.content and after.headers["Idempotent-Replayed"] == "true"
    assert app.state.calls == 1
    assert await count(settings, charges()) == 1


async def test_a_streaming_answer_cannot_be_stored_and_rolls_back(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (_app, client):
        with capture_logs() as logs:
            answer = await client.post("/charges/stream", headers=key("stream"))

    assert answer.status_code == 500
    assert [e["error_type"] for e in logs if e["event"] == "unhandled error"] == [
        "IdempotencyError"
    ]
    assert await count(settings, charges()) == 0
    assert await count(settings, keys()) == 0


async def test_the_dependency_on_a_route_of_another_class_fails_loudly(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"create_tables": True})
    async with running(settings) as (_app, client):
        with capture_logs() as logs:
            answer = await client.post("/charges/plain-route")

    assert answer.status_code == 500
    assert [e["error_type"] for e in logs if e["event"] == "unhandled error"] == [
        "DatabaseManagerError"
    ]
