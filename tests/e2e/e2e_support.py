"""The app as it runs in production, driven from outside: the real webhook and the real API.

``create_app(settings, bot_session=RecordingSession())`` is the only seam: Telegram is
replaced by the public ``bot_session=`` argument, nothing of ours is patched. What the app
sends through its outbox (the story's scenes, thank-yous, notices) arrives at the session
after the webhook's answer: :meth:`Deployment.sent` waits for it. Updates go
in as Telegram's own JSON through ``POST /webhook/telegram`` (with the secret header),
the HTTP API is called with a Bearer token, and the database is checked by counting rows
on an engine of the test's own (not through the app's repositories).

The fixtures built on it (``deployment``, ``story``) are in ``conftest.py``.
"""

from __future__ import annotations

import re
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
from app.story import Story
from db_manager import DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.telegram import RecordedRequest, RecordingSession
from tests.support.updates import (
    BOT_USERNAME,
    callback_query_update,
    secret_header,
    start_update,
)

from .outbox_support import bot_settings, outbox_settled, recorded, started

API_TOKEN = "e2e-api-token-0123456789"
WEBHOOK_PATH = "/webhook/telegram"
USER_A = 7_000_001
USER_B = 7_000_002
LINK_PATTERN = re.compile(
    rf"https://t\.me/{re.escape(BOT_USERNAME)}\?start=(?P<code>[A-Za-z0-9_-]{{1,64}})"
)


def app_settings(database: DatabaseSettings, *, api_token: str | None = API_TOKEN) -> Settings:
    """The settings a deployment would have: the bot on, the API on (unless ``None``)."""
    return Settings(
        app=AppSection(api_token=SecretStr(api_token) if api_token is not None else None),
        bot=bot_settings(),
        database=database,
    )


@dataclass
class Deployment:
    """One running app: its HTTP client, the recorded Bot API calls and a database probe."""

    client: httpx.AsyncClient
    telegram: RecordingSession
    db: AsyncEngine

    # -- Telegram -> webhook -------------------------------------------------------------------

    async def deliver(self, update: Mapping[str, Any]) -> dict[str, Any] | None:
        """POST one update as Telegram does; return the webhook answer (a Bot API method
        as JSON) or None when the app answered with an empty 200."""
        response = await self.client.post(WEBHOOK_PATH, json=update, headers=secret_header())
        assert response.status_code == 200, (response.status_code, response.text)
        if not response.content:
            return None
        answer: dict[str, Any] = response.json()
        return answer

    async def sent(self, name: str, count: int = 1) -> list[RecordedRequest]:
        """The ``name`` calls the bot made, once at least ``count`` arrived (outbox sends)."""
        return await recorded(self.telegram, name, count)

    async def settled(self) -> list[tuple[str, str, Any]]:
        """``(method, status, chat)`` of the outbox rows, once none is pending."""
        return await outbox_settled(self.db)

    # -- HTTP API ------------------------------------------------------------------------------

    async def api(self, path: str, *, token: str | None = API_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.client.get(path, headers=headers)

    async def api_json(self, path: str) -> Any:
        response = await self.api(path)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    # -- the database, read directly -------------------------------------------------------

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.db.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.db.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]

    async def user_row_id(self, telegram_id: int) -> int:
        return int(
            await self.scalar("SELECT id FROM app__users WHERE telegram_id = :t", t=telegram_id)
        )

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every app table's rows (without timestamps), to prove that nothing changed."""
        return {
            "users": await self.rows(
                "SELECT id, telegram_id, referrer_id FROM app__users ORDER BY id"
            ),
            "referral_links": await self.rows(
                "SELECT id, owner_id, code, uses FROM app__referral_links ORDER BY id"
            ),
            "novel_states": await self.rows(
                "SELECT id, user_id, scene, premium FROM app__novel_states ORDER BY id"
            ),
            "novel_messages": await self.rows(
                "SELECT id, user_id, scene, direction, text FROM app__novel_messages ORDER BY id"
            ),
            "payments": await self.rows(
                "SELECT id, user_id, amount, telegram_payment_charge_id FROM app__payments"
                " ORDER BY id"
            ),
        }


@asynccontextmanager
async def deployed(
    database: DatabaseSettings, *, api_token: str | None = API_TOKEN
) -> AsyncIterator[Deployment]:
    """``create_app(...)`` with its lifespan running, as under uvicorn."""
    telegram = RecordingSession(bot_username=BOT_USERNAME)
    app = create_app(
        app_settings(database, api_token=api_token), bot_session=telegram, configure_logs=False
    )
    engine = create_engine(database)
    try:
        async with running(app) as client:
            await started(telegram)
            yield Deployment(client=client, telegram=telegram, db=engine)
    finally:
        await engine.dispose()


# -- reading the bot's answers ---------------------------------------------------------------


def buttons(markup: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The inline buttons of a ``reply_markup`` (as sent), row by row."""
    assert markup is not None, "the message has no keyboard"
    return [button for row in markup["inline_keyboard"] for button in row]


def choice_ids(markup: Mapping[str, Any] | None) -> list[str]:
    """The choice ids behind the buttons (``choice:<id>``)."""
    ids = []
    for button in buttons(markup):
        prefix, _, choice = button["callback_data"].partition(":")
        assert prefix == "choice", button
        ids.append(choice)
    return ids


# -- walking the story as user B ------------------------------------------------------------

BOT_MESSAGE_ID = 4242  # the id Telegram gave the bot's scene message (the buttons live on it)


async def press(
    deployment: Deployment, choice_id: str, *, message_text: str = "scene"
) -> dict[str, Any]:
    """B presses the button ``choice:<choice_id>`` on the bot's scene message."""
    update = callback_query_update(
        f"choice:{choice_id}",
        user_id=USER_B,
        message_id=BOT_MESSAGE_ID,
        message_text=message_text,
    )
    answer = await deployment.deliver(update)
    assert answer is not None
    assert answer["method"] == "answerCallbackQuery"
    assert answer["callback_query_id"] == update["callback_query"]["id"]
    return answer


def route_to_premium(story: Story) -> list[str]:
    """The shortest list of choice ids from the start to a scene offering a premium choice."""
    routes: dict[str, list[str]] = {story.start: []}
    queue = [story.start]
    while queue:
        scene = story.scene(queue.pop(0))
        if any(story.scene(c.target).premium for c in scene.choices):
            return routes[scene.id]
        for choice in scene.choices:
            if choice.target not in routes and not story.scene(choice.target).premium:
                routes[choice.target] = [*routes[scene.id], choice.id]
                queue.append(choice.target)
    raise AssertionError("the story has no premium branch")


async def walk(
    deployment: Deployment, story: Story, steps: int, *, route: list[str] | None = None
) -> list[tuple[str, str, str]]:
    """B /start, then ``steps`` presses, each on a button of the scene shown last (the next
    of ``route``, or the first that does not lead into premium). Returns the log the
    database should hold."""
    answer = await deployment.deliver(start_update(user_id=USER_B, first_name="Bob"))
    assert answer is not None
    assert answer["method"] == "sendMessage"
    scene = story.start_scene
    assert answer["text"] == scene.text
    expected = [(scene.id, "in", "/start"), (scene.id, "out", scene.text)]
    markup = answer["reply_markup"]
    for _ in range(steps):
        offered = choice_ids(markup)
        assert offered == [choice.id for choice in scene.choices]
        wanted = route.pop(0) if route else None
        choice = next(
            c
            for c in scene.choices
            if (c.id == wanted if wanted else not story.scene(c.target).premium)
        )
        deployment.telegram.clear()

        answer = await press(deployment, choice.id, message_text=scene.text)
        assert "text" not in answer  # a plain acknowledgement: no alert

        # The next scene replaces the old one in place, sent through the outbox.
        [edit_call] = await deployment.sent("editMessageText")
        assert deployment.telegram.method_names == ["editMessageText"]
        edit = edit_call.params
        target = story.scene(choice.target)
        assert edit["chat_id"] == USER_B
        assert edit["message_id"] == BOT_MESSAGE_ID
        assert edit["text"] == target.text
        expected += [(scene.id, "in", choice.label), (target.id, "out", target.text)]
        scene, markup = target, edit.get("reply_markup")
        assert await current_scene(deployment) == scene.id
    return expected


async def current_scene(deployment: Deployment) -> str:
    b = await deployment.user_row_id(USER_B)
    return str(
        await deployment.scalar("SELECT scene FROM app__novel_states WHERE user_id = :u", u=b)
    )


async def message_log(deployment: Deployment) -> list[tuple[str, str, str]]:
    b = await deployment.user_row_id(USER_B)
    rows = await deployment.rows(
        "SELECT scene, direction, text FROM app__novel_messages WHERE user_id = :u ORDER BY id",
        u=b,
    )
    return [(str(scene), str(direction), str(text)) for scene, direction, text in rows]
