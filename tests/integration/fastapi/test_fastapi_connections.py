"""Issue 3, acceptance 4-7: connections are taken only when needed and always given back.

* 4 - ``/health/live``, a route without the database and a route that asks for the
  UnitOfWork but never uses it take no connection (and PostgreSQL sees nothing).
* 5 - 200 concurrent mixed requests on a real uvicorn server.
* 6 - clients that drop mid-query: uvicorn does not cancel the handler, which finishes and
  commits; nothing stays checked out, no transaction stays open on the server.
* 7 - a request-timeout wrapper around a handler stuck in ``pg_sleep``: 504, no row, no
  backend left busy; the server-side ``statement_timeout`` is the guarantee.
"""

from __future__ import annotations

import asyncio
import random
import time
import warnings
from typing import Any

import anyio
import httpx
import pytest
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db_manager import DatabaseSettings
from tests.support.pools import assert_no_leak_warnings, checked_out
from tests.support.postgres import pg_backends, pg_settings
from tests.support.waiting import wait_for

from .fastapi_support import (
    Running,
    build_app,
    checkouts,
    engine_of,
    events_of,
    in_process,
    names,
    on_uvicorn,
    thing_names,
)

# -- 4. no connection for routes that do not need one ---------------------------------------------


async def server_snapshot(run: Running) -> list[tuple[Any, ...]]:
    """What PostgreSQL knows of the app's backends: any new backend, statement or transaction
    changes it. Empty for SQLite."""
    if run.settings.dialect != "postgresql":
        return []
    return [
        (row["pid"], row["backend_start"], row["state_change"], row["xact_start"])
        for row in await pg_backends(run.database)
    ]


async def test_routes_that_do_not_use_the_database_open_no_connection(
    db_settings: DatabaseSettings,
) -> None:
    async with in_process(db_settings) as run:
        before = await server_snapshot(run)
        checkouts_before = checkouts(run.app)

        for path in ["/health/live", "/no-db", "/lazy"] * 5:
            response = await run.client.get(path)
            assert response.status_code == 200, (path, response.text)

        assert checkouts(run.app) == checkouts_before
        assert checked_out(run.app) == 0
        assert await server_snapshot(run) == before

        # Control: a route that reads does show up in both places.
        assert (await run.client.get("/things/nothing")).status_code == 404
        assert checkouts(run.app) == checkouts_before + 1
        if run.settings.dialect == "postgresql":
            assert await server_snapshot(run) != before


# -- 5. 200 concurrent mixed requests -------------------------------------------------------------

SEED = 20261125


async def test_200_concurrent_mixed_requests_on_uvicorn(db_settings: DatabaseSettings) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with on_uvicorn(db_settings) as run:
            seeds = [f"seed-{i}" for i in range(20)]
            for name in seeds:
                assert (await run.client.post("/things", json={"name": name})).status_code == 201

            plan: list[tuple[str, str, str, int]] = []  # (method, path, name, expected status)
            plan += [("POST", "/things", f"new-{i}", 201) for i in range(60)]
            plan += [("POST", "/things", seeds[i % 20], 409) for i in range(40)]
            plan += [("POST", "/things/value-error", f"bug-{i}", 500) for i in range(30)]
            plan += [("GET", f"/things/{seeds[i % 20]}", "", 200) for i in range(40)]
            plan += [("GET", "/health/live", "", 200) for _ in range(15)]
            plan += [("GET", "/no-db", "", 200) for _ in range(15)]
            assert len(plan) == 200
            random.Random(SEED).shuffle(plan)

            async def call(method: str, path: str, name: str) -> httpx.Response:
                if method == "POST":
                    return await run.client.post(path, json={"name": name})
                return await run.client.get(path)

            responses = await asyncio.gather(*(call(m, p, n) for m, p, n, _ in plan))

            assert [r.status_code for r in responses] == [expected for *_, expected in plan]
            for response in responses:
                assert response.headers["content-type"] == "application/json"
            assert await thing_names(db_settings) == {*seeds, *(f"new-{i}" for i in range(60))}
            assert checked_out(run.app) == 0
            engine = engine_of(run.app)
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

        async with in_process(db_settings) as after:  # the data is intact for a fresh app
            assert (await after.client.get("/things/new-59")).status_code == 200

    assert_no_leak_warnings(caught)


# -- 6. clients that disconnect mid-query ----------------------------------------------------------


async def test_client_disconnect_mid_query_finishes_and_gives_everything_back(
    db_settings: DatabaseSettings,
) -> None:
    # SQLite runs one writer at a time, so its handlers take turns: fewer of them.
    clients = 4 if db_settings.dialect == "postgresql" else 2
    dropped = [f"dropped-{i}" for i in range(clients)]
    async with on_uvicorn(db_settings) as run:
        async with httpx.AsyncClient(base_url=run.base_url, timeout=30.0) as impatient:
            requests = [
                asyncio.create_task(impatient.post("/things/slow?seconds=1.0", json={"name": name}))
                for name in dropped
            ]
            # Drop the clients once the handlers are in their slow query. On PostgreSQL all
            # of them get there; SQLite has one writer at a time (BEGIN IMMEDIATE), so one is
            # in its slow step and the other waits for the write lock.
            in_query = clients if run.settings.dialect == "postgresql" else 1

            async def in_their_query() -> bool:
                return len(names(run.events, "slow_start")) == in_query

            assert await wait_for(in_their_query, timeout=10.0), run.events
            for request in requests:
                request.cancel()
            results = await asyncio.gather(*requests, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results), results
        # The client and its connections are closed; no handler has finished yet.
        assert names(run.events, "slow_done") == []

        async def all_committed() -> bool:
            return sorted(names(run.events, "after_commit")) == dropped

        assert await wait_for(all_committed, timeout=5.0), run.events
        assert await thing_names(db_settings) == set(dropped)  # finished as they would have
        # ... although each handler saw, after its slow query, that its client was gone.
        assert [disconnected for *_, disconnected in events_of(run.events, "slow_done")] == [
            True
        ] * clients

        async def nothing_checked_out() -> bool:
            return checked_out(run.app) == 0

        assert await wait_for(nothing_checked_out, timeout=2.0)
        if run.settings.dialect == "postgresql":
            backends = await pg_backends(run.database)
            assert [b for b in backends if b["state"] != "idle"] == []


# -- 7. a request timeout around a handler stuck in the database ----------------------------------


class RequestTimeout:
    """ASGI wrapper: a request that has not started its response within ``seconds`` is
    cancelled and answered 504."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            with anyio.fail_after(self.seconds):
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started:
                raise
            response = JSONResponse({"detail": "request timed out"}, status_code=504)
            await response(scope, receive, send)


async def no_busy_backend(database: str) -> bool:
    return all(b["state"] == "idle" for b in await pg_backends(database))


async def test_request_timeout_gives_504_no_row_and_no_busy_backend(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"statement_timeout": 1.0})
    app = build_app(settings)
    async with on_uvicorn(settings, app, RequestTimeout(app, seconds=0.5)) as run:
        started = time.monotonic()
        response = await run.client.post("/things/slow?seconds=30", json={"name": "stuck"})
        elapsed = time.monotonic() - started

        assert response.status_code == 504
        assert response.json() == {"detail": "request timed out"}
        assert elapsed < 3.0  # 0.5 s, plus rolling back a connection busy in pg_sleep
        assert names(run.events, "slow_start") == ["stuck"]  # it was stuck in the query
        assert names(run.events, "slow_done") == []
        assert await thing_names(settings) == set()

        async def nothing_checked_out() -> bool:
            return checked_out(run.app) == 0

        assert await wait_for(nothing_checked_out, timeout=2.0)
        if settings.dialect == "postgresql":
            # Within the statement_timeout (1 s) no backend is left running or in a transaction.
            assert await wait_for(lambda: no_busy_backend(run.database), timeout=1.5), (
                await pg_backends(run.database)
            )
        assert (await run.client.get("/health/ready")).status_code == 200


@pytest.mark.postgres
async def test_statement_timeout_alone_bounds_a_stuck_handler(pg_database: str) -> None:
    """No wrapper at all: the server cancels the statement after ``statement_timeout``, the
    request fails cleanly (a statement timeout is transient: JSON 503 with ``Retry-After``,
    rolled back) and the backend is idle again."""
    settings = pg_settings(pg_database, statement_timeout=1.0)
    async with in_process(settings) as run:
        async with engine_of(run.app).connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "1s"

        started = time.monotonic()
        response = await run.client.post("/things/slow?seconds=30", json={"name": "stuck"})
        elapsed = time.monotonic() - started

        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        assert response.json()["error"] == "database_unavailable"
        assert 1.0 <= elapsed < 3.0
        assert names(run.events, "slow_done") == []
        assert await thing_names(settings) == set()
        assert checked_out(run.app) == 0
        assert await no_busy_backend(pg_database), await pg_backends(pg_database)
