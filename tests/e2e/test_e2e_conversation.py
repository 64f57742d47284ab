"""The /feedback conversation of the reference app, driven through the real webhook: ask,
wait for the answer, confirm, store, with the state in ``db_manager__telegram_fsm``; and a
restart of the app process in the middle of it (issue 14, point 4), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db_manager import DatabaseSettings, create_engine
from tests.support.served import Served, database_env
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, message_update, secret_header

from .e2e_support import (
    USER_A,
    USER_B,
    Deployment,
)


def reply_text(answer: dict[str, Any] | None) -> str:
    assert answer is not None and answer["method"] == "sendMessage", answer
    return str(answer["text"])


async def say(deployment: Deployment, text: str, user_id: int = USER_A) -> str:
    return reply_text(await deployment.deliver(message_update(text, user_id=user_id)))


async def feedback_rows(deployment: Deployment) -> list[tuple[Any, ...]]:
    return await deployment.rows("SELECT telegram_id, text FROM app__feedback ORDER BY id")


async def test_feedback_is_asked_confirmed_and_stored(deployment: Deployment) -> None:
    assert "What did you think of the story?" in await say(deployment, "/feedback")
    assert await say(deployment, "Loved the ending") == (
        'You wrote: "Loved the ending". Send it? (yes / no)'
    )
    assert await feedback_rows(deployment) == []  # nothing stored before the confirmation
    assert await say(deployment, "perhaps") == "Please answer yes or no."
    assert await say(deployment, "yes") == "Thank you! Your feedback is saved."
    assert await feedback_rows(deployment) == [(USER_A, "Loved the ending")]
    state = await deployment.rows(
        "SELECT state, data FROM db_manager__telegram_fsm WHERE user_id = :u", u=USER_A
    )
    assert [row[0] for row in state] == [None]


async def test_no_goes_back_to_writing_and_cancel_stores_nothing(deployment: Deployment) -> None:
    await say(deployment, "/feedback")
    await say(deployment, "first try")
    assert await say(deployment, "no") == "Then write it again (or /cancel)."
    assert "under 2000 characters" in await say(deployment, "x" * 2001)
    await say(deployment, "second try")
    assert await say(deployment, "/cancel") == "Cancelled. Nothing was stored."
    assert await feedback_rows(deployment) == []


async def test_two_readers_have_separate_conversations(deployment: Deployment) -> None:
    await say(deployment, "/feedback", USER_A)
    await say(deployment, "/feedback", USER_B)
    await say(deployment, "from A", USER_A)
    await say(deployment, "from B", USER_B)
    await say(deployment, "yes", USER_B)
    await say(deployment, "yes", USER_A)
    assert sorted(await feedback_rows(deployment)) == [(USER_A, "from A"), (USER_B, "from B")]


# -- 4. restart mid-conversation -------------------------------------------------------------------


def post(server: Served, text: str) -> str:
    response = httpx.post(
        f"{server.base_url}/webhook/telegram",
        json=message_update(text, user_id=USER_A),
        headers=secret_header(),
        timeout=20,
    )
    assert response.status_code == 200, (response.status_code, response.text, server.output())
    return reply_text(response.json())


@pytest.mark.slow
async def test_a_restarted_process_continues_the_conversation(
    db_settings: DatabaseSettings,
) -> None:
    env = {
        **database_env(db_settings),
        "BOT__TOKEN": BOT_TOKEN,
        "BOT__WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    with Served("app.main:create_app", env=env) as server:
        assert "What did you think" in post(server, "/feedback")
        assert "Send it?" in post(server, "Kept across a restart")
        server.restart()
        assert post(server, "yes") == "Thank you! Your feedback is saved."
    engine = create_engine(db_settings)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT telegram_id, text FROM app__feedback"))).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [(USER_A, "Kept across a restart")]
