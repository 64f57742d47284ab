"""One engine, one uow_factory, one Bot and one Dispatcher per app: shared by the HTTP side and
the bot side, started and stopped by the lifespan. Acceptance point 8 of issue 4, the
bot-off mode, the lifecycle rules and the explicit webhook registration, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from aiogram import Dispatcher
from structlog.testing import capture_logs

from db_manager import UnitOfWork
from db_manager.fastapi import ENGINE_SERVICE, UOW_FACTORY_SERVICE
from db_manager.telegram import (
    TelegramSettings,
    UnitOfWorkMiddleware,
    register_webhook,
)
from tests.support.asgi import LifespanFailed
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_ID, message_update, start_update

from .aiogram_webhook_app import Harness, HarnessFactory, build_dispatcher, telegram_settings


def uow_middlewares(dispatcher: Dispatcher) -> list[UnitOfWorkMiddleware]:
    return [m for m in dispatcher.update.middleware if isinstance(m, UnitOfWorkMiddleware)]


# -- 8. one engine, one uow_factory -------------------------------------------------------------


async def test_http_and_bot_share_one_engine_and_one_uow_factory(harness: Harness) -> None:
    state = harness.app.state
    [middleware] = uow_middlewares(harness.dispatcher)
    assert middleware.uow_factory is state.uow_factory
    assert state.services.get(UOW_FACTORY_SERVICE) is state.uow_factory
    assert state.services.get(ENGINE_SERVICE) is state.engine
    assert state.database.engine is state.engine
    assert state.uow_factory.session_factory.kw["bind"] is state.engine

    response = await harness.post(start_update(update_id=4001))
    assert response.status_code == 200
    # What the handler was given is that same factory; its unit of work is a fresh one.
    [factory] = harness.seen["uow_factory"]
    assert factory is state.uow_factory
    [uow] = harness.seen["uow"]
    assert isinstance(uow, UnitOfWork) and uow.closed


async def test_mixed_concurrent_load_gives_every_connection_back(harness: Harness) -> None:
    rng = random.Random(4)
    jobs = (
        [("http", i) for i in range(30)]
        + [("start", 4100 + i) for i in range(30)]
        + [("redelivered", 4100 + i) for i in range(10)]  # duplicates of the starts
        + [("no-db", 4200 + i) for i in range(10)]
        + [("boom", 4300 + i) for i in range(5)]
        + [("ping", i) for i in range(10)]
    )
    rng.shuffle(jobs)

    async def run(kind: str, n: int) -> int:
        if kind == "http":
            return (await harness.client.post("/http/events")).status_code
        if kind == "ping":
            return (await harness.client.get("/http/ping")).status_code
        if kind in ("start", "redelivered"):
            return (await harness.post(start_update(update_id=n, user_id=n))).status_code
        return (await harness.post(message_update(kind, update_id=n))).status_code

    statuses = await asyncio.gather(*(run(kind, n) for kind, n in jobs))
    answers = list(zip(jobs, statuses, strict=True))

    # Under load a write may meet a transient failure (SQLite's busy timeout, an exhausted
    # pool): it must then be answered 503, never acknowledged, and leave nothing behind.
    expected = {"http": 201, "ping": 200, "start": 200, "redelivered": 200}
    expected |= {"no-db": 200, "boom": 200}
    wrong = [
        (kind, n, status) for (kind, n), status in answers if status not in (expected[kind], 503)
    ]
    assert wrong == []
    assert [
        kind for (kind, _), status in answers if status == 503 and kind in ("ping", "no-db")
    ] == []
    failed = sum(status == 503 for _, status in answers)
    assert failed <= len(jobs) // 4, f"{failed} of {len(jobs)} answered 503"
    assert harness.checked_out == 0
    # Acknowledged means done, exactly once: the rows are what the 2xx answers imply.
    created = sum(1 for (kind, _), status in answers if kind == "http" and status == 201)
    assert len(await harness.events("http")) == created
    applied = sorted(
        {n for (kind, n), status in answers if kind in ("start", "redelivered") and status == 200}
    )
    assert sorted(e.update_id or 0 for e in await harness.events("start")) == applied
    assert await harness.events("boom") == []
    assert await harness.recorded_updates() == applied


# -- lifecycle ----------------------------------------------------------------------------------


async def test_startup_shutdown_and_the_bot_session_close(make_harness: HarnessFactory) -> None:
    session = RecordingSession()
    lifecycle: list[str] = []
    async with make_harness(session=session, lifecycle=lifecycle) as harness:
        assert lifecycle == [f"startup:{BOT_ID}"]
        assert not session.closed
        runtime = harness.app.state.telegram
        assert runtime.bot.session is session
        assert runtime.dispatcher is harness.dispatcher
        assert (await harness.post(start_update(update_id=4400))).status_code == 200
        # Registering the webhook is never a side effect of starting a worker.
        assert "setWebhook" not in session.method_names
    assert lifecycle == [f"startup:{BOT_ID}", f"shutdown:{BOT_ID}"]
    assert session.close_calls == 1
    assert harness.app.state.telegram is None
    assert uow_middlewares(harness.dispatcher) == []


async def test_a_dispatcher_reused_by_a_second_app_start_has_one_middleware(
    make_harness: HarnessFactory,
) -> None:
    calls: list[tuple[str, int]] = []
    lifecycle: list[str] = []
    seen: dict[str, list[object]] = {}
    dispatcher = build_dispatcher(calls, lifecycle, seen)
    async with make_harness(dispatcher=dispatcher, calls=calls, seen=seen) as first:
        assert (await first.post(start_update(update_id=4500))).status_code == 200
    async with make_harness(dispatcher=dispatcher, calls=calls, seen=seen) as second:
        [middleware] = uow_middlewares(dispatcher)
        assert middleware.uow_factory is second.app.state.uow_factory
        assert (await second.post(start_update(update_id=4501))).status_code == 200
        assert seen["uow_factory"][-1] is second.app.state.uow_factory


async def test_with_no_token_the_app_serves_http_and_the_webhook_answers_404(
    make_harness: HarnessFactory,
) -> None:
    session = RecordingSession()
    lifecycle: list[str] = []
    with capture_logs() as logs:
        async with make_harness(
            telegram=TelegramSettings(), session=session, lifecycle=lifecycle
        ) as harness:
            assert (await harness.client.get("/health/live")).status_code == 200
            assert (await harness.client.get("/health/ready")).status_code == 200
            assert (await harness.client.post("/http/events")).status_code == 201
            response = await harness.post(start_update(update_id=4600))
            assert response.status_code == 404
            assert harness.calls == []
            assert len(await harness.events("http")) == 1
            assert await harness.recorded_updates() == []
    assert any("bot is off" in e["event"] for e in logs)
    assert lifecycle == []
    assert session.requests == []


async def test_the_bot_lifespan_outside_the_database_lifespan_fails_at_start() -> None:
    """Misnested lifespans are a wiring error, reported at start, not at the first update."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from db_manager.telegram import telegram_lifespan
    from tests.support.asgi import lifespan

    dispatcher = Dispatcher()
    tg = telegram_lifespan(telegram_settings(), dispatcher, session=RecordingSession())

    @asynccontextmanager
    async def only_the_bot(app: FastAPI) -> AsyncIterator[None]:
        async with tg(app):
            yield

    with pytest.raises(LifespanFailed, match="nest it inside database_lifespan"):
        async with lifespan(FastAPI(lifespan=only_the_bot)):
            pass


async def test_register_webhook_sets_url_secret_and_the_used_update_types(
    harness: Harness,
) -> None:
    settings = telegram_settings(
        webhook_url="https://bot.example.com/webhook/telegram", drop_pending_updates=True
    )
    runtime = harness.app.state.telegram

    assert await register_webhook(runtime.bot, runtime.dispatcher, settings) is True
    assert await register_webhook(runtime.bot, runtime.dispatcher, settings) is True

    first, second = harness.session.calls("setWebhook")
    assert first.params == second.params  # idempotent: the same request every time
    assert first.params["url"] == "https://bot.example.com/webhook/telegram"
    assert first.params["secret_token"] == settings.webhook_secret.get_secret_value()  # type: ignore[union-attr]
    assert first.params["drop_pending_updates"] is True
    assert sorted(first.params["allowed_updates"]) == [
        "callback_query",
        "edited_message",
        "message",
        "pre_checkout_query",
    ]


async def test_a_failing_startup_handler_fails_the_start_and_still_closes_the_session(
    make_harness: HarnessFactory,
) -> None:
    session = RecordingSession()
    lifecycle: list[str] = []
    dispatcher = build_dispatcher([], lifecycle, {})

    @dispatcher.startup()
    async def broken() -> None:
        raise RuntimeError("startup handler failed")

    with pytest.raises(LifespanFailed, match="startup handler failed"):
        async with make_harness(dispatcher=dispatcher, session=session):
            pass
    assert session.close_calls == 1
    assert lifecycle == [f"startup:{BOT_ID}"]  # no shutdown for a start that failed
    assert uow_middlewares(dispatcher) == []
