"""A database that keeps its connections open and never answers (issue 11, point 6).

A :class:`~tests.support.proxy.TcpProxy` in front of the shared server freezes: every
connection stays up and nothing is delivered. Every statement, the pool's pre-ping included,
is bounded by ``command_timeout`` (asyncpg), after which SQLAlchemy closes the connection
within 2 s; the webhook's whole processing is bounded by ``[bot] processing_timeout``. So:

* the webhook answers 503 within ``processing_timeout`` (+ 2 s), rolled back, and the
  redelivery is applied once after the database thaws;
* the API answers 503 within ``command_timeout`` + 2 s (+ 2 s);
* with the defaults (30 s, 50 s) both answer before Telegram's 60 s (slow test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from db_manager import DatabaseSettings, create_engine
from db_manager.telegram import TelegramSettings
from tests.support.asgi import running
from tests.support.postgres import PG_HOST, PG_PORT, pg_settings
from tests.support.proxy import TcpProxy
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    recorded_updates,
    scenario_app,
    telegram_settings,
)
from tests.support.updates import message_update, next_update_id
from tests.support.waiting import wait_for

CLOSE = 2.0  # SQLAlchemy's graceful close of a connection that timed out (asyncpg dialect)
SLACK = 2.0


@pytest.fixture
async def proxy(pg_available: None) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(PG_HOST, PG_PORT) as running_proxy:
        yield running_proxy


async def _timed(request: asyncio.Future[httpx.Response] | asyncio.Task[httpx.Response]) -> float:
    started = time.monotonic()
    await request
    return time.monotonic() - started


async def test_a_stuck_update_and_a_request_end_as_503_within_their_bounds(
    pg_database: str, proxy: TcpProxy
) -> None:
    settings = pg_settings(pg_database, port=proxy.port, command_timeout=2.0, connect_timeout=2.0)
    bot = telegram_settings(processing_timeout=1.0)
    first = [True]

    async def stuck(run: Run) -> None:
        await run.uow.session.flush()  # the mark and the update id are written...
        if first[0]:
            first[0] = False
            await proxy.freeze()  # ...then the database freezes
        await run.uow.session.execute(text("SELECT 1"))

    async def noop(run: Run) -> None:
        await run.uow.session.execute(text("SELECT 1"))

    app = scenario_app(settings, {"stuck": stuck, "noop": noop}, telegram=bot)
    observer = create_engine(pg_settings(pg_database))  # straight to the server
    update = message_update("stuck", update_id=next_update_id())
    try:
        async with running(app) as client:
            assert (await client.post("/run/noop")).status_code == 200  # connections pooled

            async with asyncio.timeout(30):  # never answering would hang the test
                started = time.monotonic()
                hook = await post_update(client, update)
                hook_took = time.monotonic() - started
                started = time.monotonic()
                api = await client.post("/run/noop")
                api_took = time.monotonic() - started
            print(f"frozen: webhook 503 after {hook_took:.2f} s, API 503 after {api_took:.2f} s")

            assert hook.status_code == 503 and hook.headers["Retry-After"] == "1", hook.text
            assert hook_took < bot.processing_timeout + SLACK, hook_took
            assert api.status_code == 503 and api.headers["Retry-After"] == "1", api.text
            assert settings.command_timeout is not None
            assert api_took < settings.command_timeout + CLOSE + SLACK, api_took

            await proxy.forward()
            # The timed-out update gives its connection back once the driver gave up on it.
            engine = app.state.engine
            assert await wait_for(lambda: _none_checked_out(engine), timeout=10)
            assert await count_marks(observer, "stuck") == 0  # rolled back
            assert await recorded_updates(observer) == []

            again = await post_update(client, update)
            twice = await post_update(client, update)
            assert (again.status_code, twice.status_code) == (200, 200)
            assert await count_marks(observer, "stuck") == 1
            assert await recorded_updates(observer) == [update["update_id"]]
    finally:
        await observer.dispose()


async def _none_checked_out(engine: object) -> bool:
    return int(engine.pool.checkedout()) == 0  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_with_the_default_bounds_both_answer_before_telegram_gives_up(
    pg_database: str, proxy: TcpProxy
) -> None:
    defaults = DatabaseSettings()
    bot = TelegramSettings()
    assert defaults.command_timeout is not None
    settings = pg_settings(pg_database, port=proxy.port)

    async def noop(run: Run) -> None:
        await run.uow.session.execute(text("SELECT 1"))

    app = scenario_app(settings, {"noop": noop}, telegram=telegram_settings())
    async with running(app) as client:
        warm = [client.post("/run/noop") for _ in range(2)]  # two pooled connections
        assert [r.status_code for r in await asyncio.gather(*warm)] == [200, 200]
        await proxy.freeze()
        hook = asyncio.ensure_future(
            post_update(client, message_update("noop", update_id=next_update_id()))
        )
        api = asyncio.ensure_future(client.post("/run/noop"))
        async with asyncio.timeout(70):  # never answering would hang the test, not fail it
            hook_took, api_took = await asyncio.gather(_timed(hook), _timed(api))
        await proxy.forward()

    print(f"frozen, defaults: webhook 503 after {hook_took:.2f} s, API after {api_took:.2f} s")
    assert hook.result().status_code == 503 and api.result().status_code == 503
    telegram_wait = 60.0
    assert hook_took < min(bot.processing_timeout, defaults.command_timeout + CLOSE) + SLACK
    assert api_took < defaults.command_timeout + CLOSE + SLACK
    assert max(hook_took, api_took) < telegram_wait
