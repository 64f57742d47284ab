"""A webhook app whose one handler does ``update_data(counter=counter + 1)``, for uvicorn.

``uvicorn tests.integration.aiogram.fsm_counter_app:create_app --factory`` with the database
in ``DATABASE__*``, the bot in ``BOT__TOKEN``/``BOT__WEBHOOK_SECRET``, and the storage in
``FSM_STORAGE``: ``sqlalchemy`` (ours), or ``redis`` (aiogram's RedisStorage on
``FSM_REDIS_URL`` under the key prefix ``FSM_REDIS_PREFIX``); ``FSM_ISOLATION=simple`` adds
aiogram's in-process ``SimpleEventIsolation`` (nothing isolates across processes).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiogram import Dispatcher, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import Message
from fastapi import FastAPI

from db_manager import DatabaseSettings
from db_manager.fastapi import database_lifespan, health_router
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.fsm import SqlAlchemyStorage
from db_manager.telegram.webhook import telegram_webhook_router

# Work between the read and the write, as a real handler has: it widens the window in which
# a storage without a lock loses a concurrent update.
WORK_SECONDS = 0.01


def storage_from_env() -> BaseStorage:
    if os.environ.get("FSM_STORAGE", "sqlalchemy") == "redis":
        builder = DefaultKeyBuilder(prefix=os.environ["FSM_REDIS_PREFIX"], with_bot_id=True)
        return RedisStorage.from_url(os.environ["FSM_REDIS_URL"], key_builder=builder)
    return SqlAlchemyStorage()


def create_app() -> FastAPI:
    router = Router()

    @router.message()
    async def count(message: Message, state: FSMContext) -> None:
        counter = await state.get_value("counter", 0)
        await asyncio.sleep(WORK_SECONDS)
        await state.update_data(counter=counter + 1)

    isolation = SimpleEventIsolation() if os.environ.get("FSM_ISOLATION") == "simple" else None
    dispatcher = Dispatcher(storage=storage_from_env(), events_isolation=isolation)
    dispatcher.include_router(router)
    database = database_lifespan(DatabaseSettings())
    telegram = telegram_lifespan(TelegramSettings(), dispatcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database(app), telegram(app):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(health_router())
    app.include_router(telegram_webhook_router())
    return app
