"""A process that only applies inbox updates: ``python -m app worker`` is built on this.

::

    await run_worker(settings.bot, dispatcher, database, stop=stop_event)

Web processes then run with ``[bot] workers = 0`` and only acknowledge (store) updates. The
worker builds its Bot like the webhook's lifespan does (``[bot] api_server`` included),
emits the Dispatcher's startup and shutdown, runs ``[bot] workers`` workers (at least one)
woken by LISTEN/NOTIFY, and when ``stop`` is set stops claiming, lets the updates in flight
finish within ``[bot] drain_timeout`` (the rest roll back to pending), and returns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiogram import Dispatcher
from aiogram.client.session.base import BaseSession

from db_manager.database import Database
from db_manager.errors import ConfigError
from db_manager.notify import Notifications
from db_manager.telegram.inbox import Inbox
from db_manager.telegram.lifespan import build_bot
from db_manager.telegram.middleware import setup_dispatcher, teardown_dispatcher
from db_manager.telegram.settings import TelegramSettings

__all__ = ["run_worker"]

log = structlog.get_logger("db_manager.telegram")


async def run_worker(
    settings: TelegramSettings,
    dispatcher: Dispatcher,
    database: Database[Any],
    *,
    stop: asyncio.Event,
    session: BaseSession | None = None,
    outbox: Any = None,
    workers: int | None = None,
) -> None:
    """Apply inbox updates until ``stop`` is set; ``database`` must be started."""
    if settings.token is None:
        raise ConfigError("[bot] token is not set; the worker has no bot to serve")
    bot = build_bot(settings, session=session)
    setup_dispatcher(dispatcher, database.uow_factory, outbox=outbox)
    notifications = Notifications(database.engine)
    inbox = Inbox(
        bot,
        dispatcher,
        database.uow_factory,
        settings,
        notifications=notifications,
        outbox=outbox,
    )
    workflow = {**dispatcher.workflow_data, "bot": bot, "bots": [bot], "dispatcher": dispatcher}
    try:
        await dispatcher.emit_startup(**workflow)
        try:
            await notifications.start()
            await inbox.start(max(1, settings.workers if workers is None else workers))
            log.info("inbox worker process ready", bot_id=bot.id, workers=inbox.running)
            await stop.wait()
            log.info("inbox worker process draining", deadline=settings.drain_timeout)
        finally:
            await inbox.stop(within=settings.drain_timeout)
            await notifications.stop()
            await dispatcher.emit_shutdown(**workflow)
    finally:
        teardown_dispatcher(dispatcher)
        await bot.session.close()
