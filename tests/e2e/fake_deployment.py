"""The app talking to a real HTTP Bot API: the fake server, reached through ``[bot] api_server``.

``against_fake(database, fake)`` runs ``create_app(settings)`` with its lifespan and no
``bot_session``: the app builds its own aiohttp session, as in production, and every Bot
API call it makes (the startup's ``getMe``, the outbox sender's sends) goes over HTTP to
the :class:`~tests.support.fake_bot_api.FakeBotApi`. Updates go in through the webhook,
the API is called with the Bearer token, the database is read on an engine of the test's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import AppSection, Settings
from app.main import create_app
from db_manager import DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.fake_bot_api import FakeBotApi
from tests.support.updates import (
    BOT_ID,
    DATE,
    bot_user,
    next_update_id,
    private_chat,
    secret_header,
    user,
)

from .outbox_support import bot_settings, outbox_settled

__all__ = ["API_TOKEN", "FakeDeployment", "against_fake", "my_chat_member_update"]

API_TOKEN = "outbox-api-token-0123456789"
WEBHOOK_PATH = "/webhook/telegram"


def my_chat_member_update(
    user_id: int, status: str, *, old_status: str | None = None, update_id: int | None = None
) -> dict[str, Any]:
    """The bot's own membership in the private chat of ``user_id`` changed to ``status``:
    ``"kicked"`` when the user blocks the bot, ``"member"`` when they unblock it."""
    old = old_status or ("member" if status == "kicked" else "kicked")

    def member(state: str) -> dict[str, Any]:
        data: dict[str, Any] = {"status": state, "user": bot_user(BOT_ID)}
        if state == "kicked":
            data["until_date"] = 0
        return data

    return {
        "update_id": next_update_id() if update_id is None else update_id,
        "my_chat_member": {
            "chat": private_chat(user_id),
            "from": user(user_id),
            "date": DATE,
            "old_chat_member": member(old),
            "new_chat_member": member(status),
        },
    }


@dataclass
class FakeDeployment:
    client: httpx.AsyncClient
    fake: FakeBotApi
    db: AsyncEngine

    async def deliver(self, update: Mapping[str, Any]) -> httpx.Response:
        response = await self.client.post(WEBHOOK_PATH, json=update, headers=secret_header())
        assert response.status_code == 200, (response.status_code, response.text)
        return response

    async def post_api(
        self, path: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            path, json=body, headers={"Authorization": f"Bearer {API_TOKEN}", **(headers or {})}
        )

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.db.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]

    async def unreachable(self) -> set[int]:
        """Telegram ids of the users marked unreachable."""
        rows = await self.rows(
            "SELECT telegram_id FROM app__users WHERE unreachable_since IS NOT NULL"
        )
        return {int(telegram_id) for (telegram_id,) in rows}

    async def settled(self) -> list[tuple[str, str, Any]]:
        return await outbox_settled(self.db)


def fake_settings(database: DatabaseSettings, fake: FakeBotApi, **bot: Any) -> Settings:
    return Settings(
        app=AppSection(api_token=SecretStr(API_TOKEN)),
        bot=bot_settings(api_server=fake.base_url, **bot),
        database=database,
    )


@asynccontextmanager
async def against_fake(
    database: DatabaseSettings, fake: FakeBotApi, **bot: Any
) -> AsyncIterator[FakeDeployment]:
    """The app on ``database``, its Bot API the ``fake``; started once its getMe arrived."""
    app = create_app(fake_settings(database, fake, **bot), configure_logs=False)
    engine = create_engine(database)
    try:
        async with running(app) as client:
            await fake.wait_calls(1, "getMe")
            yield FakeDeployment(client=client, fake=fake, db=engine)
    finally:
        await engine.dispose()
