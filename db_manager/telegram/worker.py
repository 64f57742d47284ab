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
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import Dispatcher
from aiogram.client.session.base import BaseSession

from db_manager.database import Database
from db_manager.errors import ConfigError
from db_manager.heap import freeze_startup_heap
from db_manager.telegram.lifespan import BackgroundWork, build_bot
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
    on_forbidden: Callable[[int, str], Awaitable[None]] | None = None,
    workers: int | None = None,
    sender: bool | None = None,
) -> None:
    """Apply inbox updates until ``stop`` is set; ``database`` must be started.

    With ``outbox`` the process also runs the outbox sender (``sender``, default ``[bot]
    outbox_sender``), so web processes can run with ``outbox_sender = false``.
    """
    if settings.token is None:
        raise ConfigError("[bot] token is not set; the worker has no bot to serve")
    bot = build_bot(settings, session=session)
    setup_dispatcher(dispatcher, database.uow_factory, outbox=outbox)
    work = BackgroundWork(
        bot,
        dispatcher,
        database.uow_factory,
        database.engine,
        settings,
        inbox=True,
        outbox=outbox,
        on_forbidden=on_forbidden,
        workers=max(1, settings.workers if workers is None else workers),
        sender=sender,
    )
    workflow = {**dispatcher.workflow_data, "bot": bot, "bots": [bot], "dispatcher": dispatcher}
    try:
        await dispatcher.emit_startup(**workflow)
        try:
            await work.start()
            freeze_startup_heap()
            log.info("inbox worker process ready", bot_id=bot.id, workers=work.workers)
            await stop.wait()
            log.info("inbox worker process draining", deadline=settings.drain_timeout)
        finally:
            await work.stop(within=settings.drain_timeout)
            await dispatcher.emit_shutdown(**workflow)
    finally:
        teardown_dispatcher(dispatcher)
        await bot.session.close()
