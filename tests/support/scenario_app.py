"""An app whose HTTP route and bot handler run the same named scenario: for failure tests.

::

    async def sleep(run: Run) -> None:
        await run.uow.session.execute(text("SELECT pg_sleep(1)"))

    app = scenario_app(settings, {"sleep": sleep})
    async with running(app) as client:
        await client.post("/run/sleep")                        # in the request's UowDep
        await post_update(client, message_update("sleep"))      # in the update's unit of work

Before the scenario each run adds a :class:`Mark` (``kind`` = the scenario name, the
update id for the bot), so a test sees whether the run was committed or rolled back. The app
is composed as an application composes it (nested lifespans, ``install_error_handlers``,
``OneLineStartupErrors``, the webhook router, ``health_router``); Telegram is replaced only by
the public ``session=`` argument.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from aiogram import Dispatcher, Router
from aiogram.client.session.base import BaseSession
from aiogram.types import ErrorEvent, Message, Update
from fastapi import FastAPI
from sqlalchemy import BigInteger, MetaData, String, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings, UnitOfWork
from db_manager.fastapi import (
    OneLineStartupErrors,
    UowDep,
    database_lifespan,
    health_router,
    install_error_handlers,
)
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.store import TelegramUpdate
from db_manager.telegram.webhook import telegram_webhook_router
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, encode, secret_header

__all__ = [
    "WEBHOOK_PATH",
    "Mark",
    "Run",
    "Scenario",
    "count_marks",
    "post_update",
    "recorded_updates",
    "scenario_app",
    "telegram_settings",
]

WEBHOOK_PATH = "/webhook/telegram"


class ScenarioModel(Base):
    """The test table lives in a MetaData of its own, never in ``Base.metadata``."""

    __abstract__ = True
    __plugin__ = "scenario_test"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Mark(ScenarioModel):
    """Written by every run before its scenario: committed or not, a test can see it."""

    __tablename__ = "marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    update_id: Mapped[int | None] = mapped_column(BigInteger)


@dataclass
class Run:
    """What a scenario gets: the unit of work, and the message when the bot runs it."""

    uow: UnitOfWork
    message: Message | None = None


Scenario = Callable[[Run], Awaitable[None]]


def telegram_settings(**overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {"token": BOT_TOKEN, "webhook_secret": WEBHOOK_SECRET}
    values.update(overrides)
    return TelegramSettings(**values)


def scenario_app(
    settings: DatabaseSettings,
    scenarios: dict[str, Scenario],
    *,
    session: BaseSession | None = None,
    telegram: TelegramSettings | None = None,
    swallow_errors: bool = False,
) -> FastAPI:
    """The app; ``swallow_errors`` adds an aiogram error handler that swallows every error
    (as some apps do to keep a chat quiet)."""
    dispatcher = Dispatcher()
    router = Router(name="scenarios")

    @router.message()
    async def run_scenario(message: Message, uow: UnitOfWork, event_update: Update) -> None:
        name = message.text or ""
        uow.session.add(Mark(kind=name, update_id=event_update.update_id))
        await scenarios[name](Run(uow, message))

    if swallow_errors:

        @router.errors()
        async def swallow(event: ErrorEvent) -> bool:
            return True

    dispatcher.include_router(router)
    db_lifespan = database_lifespan(settings)
    tg_lifespan = telegram_lifespan(
        telegram if telegram is not None else telegram_settings(),
        dispatcher,
        session=session if session is not None else RecordingSession(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db_lifespan(app):
            engine: AsyncEngine = app.state.engine
            async with engine.begin() as conn:
                await conn.run_sync(ScenarioModel.metadata.create_all)
            async with tg_lifespan(app):
                yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    app.include_router(health_router())
    app.include_router(telegram_webhook_router(WEBHOOK_PATH))

    @app.post("/run/{name}")
    async def run(name: str, uow: UowDep) -> dict[str, str]:
        uow.session.add(Mark(kind=name))
        await scenarios[name](Run(uow))
        return {"status": "done"}

    return app


async def post_update(client: httpx.AsyncClient, update: dict[str, Any]) -> httpx.Response:
    """POST ``update`` to the webhook as Telegram does (with the secret header)."""
    headers = {"Content-Type": "application/json", **secret_header()}
    return await client.post(WEBHOOK_PATH, content=encode(update), headers=headers)


async def count_marks(engine: AsyncEngine, kind: str) -> int:
    """Committed marks of ``kind``, read through ``engine`` (an observer, not the app's)."""
    async with engine.connect() as conn:
        query = select(func.count()).select_from(Mark).where(Mark.kind == kind)
        return int((await conn.execute(query)).scalar_one())


async def recorded_updates(engine: AsyncEngine) -> list[int]:
    """Update ids committed in ``db_manager__telegram_updates``."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(TelegramUpdate.update_id).order_by(TelegramUpdate.update_id)
        )
        return [int(value) for value in result.scalars()]
