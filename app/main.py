"""The composition root: ``create_app(settings)`` builds everything once, at start.

Nothing here runs at import: uvicorn calls ``create_app`` (``--factory``), tests call it
with their own settings and a recording bot session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiogram.client.session.base import BaseSession
from fastapi import FastAPI

from app.api import build_api_router
from app.bot import build_dispatcher
from app.bot.outbox import Outbox
from app.bot.reachability import forbidden_hook
from app.config import Settings, load_app_settings
from app.logs import configure_logging
from app.story import load_story
from app.unit_of_work import AppUnitOfWork
from db_manager.drain import Drain
from db_manager.fastapi import (
    OneLineStartupErrors,
    database_lifespan,
    health_router,
    install_error_handlers,
)
from db_manager.telegram import telegram_lifespan
from db_manager.telegram.webhook import inbox_readiness, telegram_webhook_router

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    bot_session: BaseSession | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    """Build the FastAPI app: database, bot webhook, health and the HTTP API."""
    settings = settings if settings is not None else load_app_settings()
    if configure_logs:
        configure_logging(settings.app.log_level, settings.app.log_format)
    story = load_story()  # validated now: a broken story stops the start
    dispatcher = build_dispatcher(story)
    database = database_lifespan(settings.database, uow_class=AppUnitOfWork)
    # Handlers enqueue Bot API calls in their transaction (data "outbox"); this process's
    # sender delivers them ([bot] outbox_sender) and reports 403s to mark users unreachable.
    telegram = telegram_lifespan(
        settings.bot,
        dispatcher,
        session=bot_session,
        outbox=Outbox,
        on_forbidden=forbidden_hook(lambda: app.state.uow_factory),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        token = settings.app.api_token
        app.state.api_token = token.get_secret_value().encode() if token else None
        # SIGTERM: readiness off and new webhook posts 503 first, in-flight work finishes,
        # then uvicorn stops (see db_manager.drain).
        drain = app.state.drain = Drain()
        drain.install_signal_handlers(timeout=settings.bot.drain_timeout)
        try:
            async with database(app), telegram(app):
                yield
        finally:
            drain.restore_signal_handlers()

    docs = settings.app.docs
    app = FastAPI(
        title="db_manager reference app",
        lifespan=lifespan,
        max_body_size=settings.app.max_body_size,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    # The webhook first: Telegram's posts are most of the traffic, and the router checks
    # each included route in turn (~7 us each).
    app.include_router(
        telegram_webhook_router(settings.bot.webhook_path, max_body_size=settings.bot.max_body_size)
    )
    app.include_router(health_router(details={"inbox": inbox_readiness}))
    app.include_router(build_api_router())
    return app
