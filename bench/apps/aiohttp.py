"""The webhook reference: aiogram's own aiohttp ``SimpleRequestHandler``, hand-written session.

The same work as the project's webhook: one transaction per update that records
``(bot_id, update_id)`` in ``db_manager__telegram_updates`` (``INSERT ... ON CONFLICT DO
NOTHING``) and then the handler's row, committed before the answer (``handle_in_background``
off, as the project does; aiogram's default answers before the handler even runs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.types import Message as TelegramMessage
from aiogram.types import TelegramObject, Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.common import (
    BOT_TOKEN,
    UPDATES_TABLE,
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    Message,
    Target,
)


class SessionMiddleware(BaseMiddleware):
    """A session per update inside ``session.begin()``; the update is recorded first."""

    def __init__(self) -> None:
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert self.sessionmaker is not None
        async with self.sessionmaker() as session, session.begin():
            if isinstance(event, Update):
                bot: Bot = data["bot"]
                recorded = await session.execute(
                    insert(UPDATES_TABLE)
                    .values(
                        bot_id=bot.id,
                        update_id=event.update_id,
                        received_at=dt.datetime.now(dt.UTC),
                    )
                    .on_conflict_do_nothing()
                )
                if recorded.rowcount != 1:  # type: ignore[attr-defined]
                    return None  # already applied
            data["session"] = session
            return await handler(event, data)


def build(target: Target) -> web.Application:
    bot = Bot(BOT_TOKEN)
    dispatcher = Dispatcher()
    router = Router()

    @router.message()
    async def on_message(message: TelegramMessage, session: AsyncSession) -> None:
        session.add(Message(chat_id=message.chat.id, text=message.text or ""))

    dispatcher.include_router(router)
    middleware = SessionMiddleware()
    dispatcher.update.middleware(middleware)

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = create_async_engine(
            target.url(), pool_size=target.pool_size, max_overflow=0, pool_pre_ping=False
        )
        middleware.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        yield
        await engine.dispose()

    app = web.Application()
    app.cleanup_ctx.append(database)
    SimpleRequestHandler(
        dispatcher=dispatcher, bot=bot, secret_token=WEBHOOK_SECRET, handle_in_background=False
    ).register(app, path=WEBHOOK_PATH)
    setup_application(app, dispatcher, bot=bot)
    return app
