"""Fixtures of the webhook tests: a running app (see ``.aiogram_webhook_app``) per test.

Each test gets a fresh database on the parametrized backend (``db_settings``: SQLite and
PostgreSQL) and an app started through its ASGI lifespan, with Telegram replaced only by the
public ``session=`` argument.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiogram import Dispatcher

from db_manager import DatabaseSettings, create_engine
from db_manager.telegram import TelegramSettings
from tests.support.asgi import running
from tests.support.telegram import RecordingSession

from .aiogram_webhook_app import (
    Harness,
    HarnessFactory,
    build_app,
    build_dispatcher,
    telegram_settings,
)


@pytest.fixture
def make_harness(db_settings: DatabaseSettings) -> HarnessFactory:
    """``async with make_harness(db_settings=..., telegram=..., dispatcher=...) as h:``."""

    @asynccontextmanager
    async def factory(
        *,
        db: DatabaseSettings | None = None,
        telegram: TelegramSettings | None = None,
        dispatcher: Dispatcher | None = None,
        session: RecordingSession | None = None,
        calls: list[tuple[str, int]] | None = None,
        lifecycle: list[str] | None = None,
        seen: dict[str, list[Any]] | None = None,
    ) -> AsyncIterator[Harness]:
        calls = [] if calls is None else calls
        lifecycle = [] if lifecycle is None else lifecycle
        seen = {} if seen is None else seen
        if dispatcher is None:
            dispatcher = build_dispatcher(calls, lifecycle, seen)
        session = RecordingSession() if session is None else session
        checkouts = [0]
        app = build_app(
            db or db_settings,
            telegram if telegram is not None else telegram_settings(),
            dispatcher,
            session,
            checkouts,
        )
        observer = create_engine(db_settings)
        try:
            async with running(app) as client:
                harness = Harness(
                    app=app,
                    client=client,
                    session=session,
                    dispatcher=dispatcher,
                    observer=observer,
                    calls=calls,
                    lifecycle=lifecycle,
                    seen=seen,
                    checkouts=checkouts,
                )
                for router in dispatcher.sub_routers:
                    hooks = getattr(router, "hooks", None)
                    if hooks is not None:
                        hooks["before_commit"] = harness.before_commit
                yield harness
                assert harness.checked_out == 0, "a connection was not given back"
        finally:
            await observer.dispose()

    return factory


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> AsyncIterator[Harness]:
    """The default app, running, on a fresh database of the parametrized backend."""
    async with make_harness() as running_harness:
        yield running_harness
