"""Inbox mode with the outbox: a handler's returned method is enqueued in its transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiogram import Dispatcher, Router
from aiogram.methods import SendMessage
from aiogram.types import Message
from fastapi import FastAPI
from sqlalchemy import text

from db_manager.fastapi import database_lifespan
from db_manager.telegram import telegram_lifespan
from db_manager.telegram.outbox import Outbox
from db_manager.telegram.webhook import telegram_webhook_router
from tests.support.asgi import running
from tests.support.postgres import pg_settings
from tests.support.scenario_app import WEBHOOK_PATH, post_update, telegram_settings
from tests.support.telegram import RecordingSession
from tests.support.updates import message_update, next_update_id
from tests.support.waiting import wait_for


@pytest.mark.postgres
async def test_a_returned_method_goes_through_the_outbox_after_the_commit(
    pg_database: str,
) -> None:
    router = Router()

    @router.message()
    async def echo(message: Message) -> SendMessage:
        return message.answer(f"echo {message.text}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    session = RecordingSession()
    database = database_lifespan(pg_settings(pg_database))
    telegram = telegram_lifespan(
        telegram_settings(processing="inbox", workers=1, poll_interval=0.2),
        dispatcher,
        session=session,
        outbox=Outbox,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database(app), telegram(app):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(telegram_webhook_router(WEBHOOK_PATH))
    async with running(app) as client:
        engine = app.state.engine
        body = message_update("one", update_id=next_update_id())
        assert (await post_update(client, body)).status_code == 200

        async def sent() -> bool:
            return "sendMessage" in session.method_names

        assert await wait_for(sent, timeout=15)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("select method, status from db_manager__telegram_outbox order by id")
                )
            ).all()
            inbox = await conn.scalar(text("select status from db_manager__telegram_inbox"))
    assert [tuple(row) for row in rows] == [("sendMessage", "sent")]
    assert inbox == "done"
    assert session.last("sendMessage").params["text"] == "echo one"
