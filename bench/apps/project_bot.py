"""This project's webhook: FastAPI with ``database_lifespan``, ``telegram_lifespan`` (the
aiogram ``UnitOfWorkMiddleware`` on the dispatcher) and ``telegram_webhook_router``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.types import Message as TelegramMessage
from fastapi import FastAPI

from bench.common import BOT_TOKEN, WEBHOOK_PATH, WEBHOOK_SECRET, BenchModel, Message, Target
from db_manager import UnitOfWork
from db_manager.fastapi import database_lifespan, health_router, install_error_handlers
from db_manager.telegram import TelegramSettings, telegram_lifespan
from db_manager.telegram.webhook import telegram_webhook_router


def build(target: Target, **settings_overrides: Any) -> FastAPI:
    settings = target.settings(**settings_overrides)
    telegram = TelegramSettings(token=BOT_TOKEN, webhook_secret=WEBHOOK_SECRET)
    dispatcher = Dispatcher()
    bot_router = Router()

    @bot_router.message()
    async def on_message(message: TelegramMessage, uow: UnitOfWork) -> None:
        uow.session.add(Message(chat_id=message.chat.id, text=message.text or ""))

    dispatcher.include_router(bot_router)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            database_lifespan(settings, metadata=BenchModel.metadata)(app),
            telegram_lifespan(telegram, dispatcher)(app),
        ):
            yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    # The webhook first: FastAPI checks each included router in turn (~7 us each).
    app.include_router(telegram_webhook_router(WEBHOOK_PATH))
    app.include_router(health_router())
    return app
