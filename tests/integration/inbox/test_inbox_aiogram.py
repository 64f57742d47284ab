"""aiogram in inbox mode: filters, nested routers, data, FSM state, returned methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.base import BaseSession
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Message, Update
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager import DatabaseSettings, UnitOfWork
from db_manager.fastapi import database_lifespan
from db_manager.telegram import telegram_lifespan
from db_manager.telegram.fsm import SqlAlchemyStorage
from db_manager.telegram.webhook import telegram_webhook_router
from tests.support.asgi import running
from tests.support.postgres import pg_fetch, pg_settings
from tests.support.scenario_app import Mark, ScenarioModel, post_update, telegram_settings
from tests.support.telegram import RecordingSession
from tests.support.updates import (
    BOT_ID,
    GROUP_CHAT_ID,
    message_update,
    next_update_id,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.postgres


class Form(StatesGroup):
    name = State()


class ProbingSession(RecordingSession):
    """Before each sendMessage, reads the committed marks from another connection."""

    def __init__(self, database: str) -> None:
        super().__init__()
        self.database = database
        self.committed_at_send: list[list[str]] = []

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        if isinstance(method, SendMessage):
            query = f"SELECT kind FROM {Mark.__tablename__} ORDER BY id"
            rows = await pg_fetch(query, database=self.database)
            self.committed_at_send.append([row["kind"] for row in rows])
        return await super().make_request(bot, method, timeout)


def build_app(
    settings: DatabaseSettings, session: BaseSession, seen: list[dict[str, Any]]
) -> FastAPI:
    dispatcher = Dispatcher(storage=SqlAlchemyStorage(), greeting="hello from workflow_data")
    private = Router(name="private")
    private.message.filter(F.chat.type == "private")
    forms = Router(name="forms")
    private.include_router(forms)
    dispatcher.include_router(private)

    @forms.message(Command("start"))
    async def start(
        message: Message,
        bot: Bot,
        event_update: Update,
        greeting: str,
        state: FSMContext,
        uow: UnitOfWork,
    ) -> SendMessage:
        seen.append(
            {
                "handler": "start",
                "bot_id": bot.id,
                "update": event_update.update_id,
                "greeting": greeting,
            }
        )
        uow.session.add(Mark(kind="start", update_id=event_update.update_id))
        await state.set_state(Form.name)
        await state.update_data(asked_in=event_update.update_id)
        return message.answer("What is your name?")

    @forms.message(StateFilter(Form.name), F.text)
    async def named(
        message: Message, state: FSMContext, uow: UnitOfWork, event_update: Update
    ) -> SendMessage:
        data = await state.get_data()
        seen.append({"handler": "named", "asked_in": data["asked_in"], "name": message.text})
        uow.session.add(Mark(kind=f"named {message.text}", update_id=event_update.update_id))
        await state.clear()
        return message.answer(f"Hi, {message.text}!")

    db_lifespan = database_lifespan(settings)
    tg_lifespan = telegram_lifespan(
        telegram_settings(processing="inbox", workers=2, poll_interval=0.05),
        dispatcher,
        session=session,
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
    app.include_router(telegram_webhook_router("/webhook/telegram"))
    return app


async def test_inbox_workers_run_aiogram_as_the_webhook_does(pg_database: str) -> None:
    session = ProbingSession(pg_database)
    seen: list[dict[str, Any]] = []
    app = build_app(pg_settings(pg_database), session, seen)
    user = 5001
    async with running(app) as client:
        start = message_update("/start", update_id=next_update_id(), user_id=user)
        name = message_update("Ada", update_id=next_update_id(), user_id=user)
        in_group = message_update(
            "/start", update_id=next_update_id(), user_id=user, chat_id=GROUP_CHAT_ID
        )
        for update in (start, name, in_group):
            assert (await post_update(client, update)).status_code == 200

        async def all_done() -> bool:
            rows = await pg_fetch(
                "SELECT count(*) AS n FROM db_manager__telegram_inbox WHERE status = 'done'",
                database=pg_database,
            )
            return rows[0]["n"] == 3 and len(session.calls("sendMessage")) == 2

        assert await wait_for(all_done, timeout=30)
        engine: AsyncEngine = app.state.engine
        async with engine.connect() as conn:
            kinds = (await conn.execute(select(Mark.kind).order_by(Mark.id))).scalars().all()
    # Filters and nested routers: the group message matched no handler (still done).
    assert kinds == ["start", "named Ada"]
    assert seen == [
        {
            "handler": "start",
            "bot_id": BOT_ID,
            "update": start["update_id"],
            "greeting": "hello from workflow_data",
        },
        # FSM state and data of the first update, read by the second (another transaction).
        {"handler": "named", "asked_in": start["update_id"], "name": "Ada"},
    ]
    # Returned methods are sent through the bot, each after its update committed.
    sent = session.calls("sendMessage")
    assert [(c.params["chat_id"], c.params["text"]) for c in sent] == [
        (user, "What is your name?"),
        (user, "Hi, Ada!"),
    ]
    assert session.committed_at_send == [["start"], ["start", "named Ada"]]
