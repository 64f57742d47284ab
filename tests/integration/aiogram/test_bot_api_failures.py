"""A Bot API call made inside a handler fails (issue 11, point 5).

Transient (the Bot API unreachable, 5xx, 429): the update is rolled back and answered 503 with
``Retry-After`` (Telegram's ``retry_after`` for a 429), also when an aiogram error handler of
the app swallows the error; Telegram's redelivery is then applied once. Permanent (400, 403):
rolled back, acknowledged with 200 and logged. The bot's outgoing calls go through a session
that fails the way aiogram's own does; nothing of db_manager is patched.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramEntityTooLarge, TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from structlog.testing import capture_logs

from db_manager import DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    recorded_updates,
    scenario_app,
)
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, message_update, next_update_id


class FlakySession(RecordingSession):
    """A :class:`RecordingSession` that can be down: while ``down`` is set every call fails,
    through aiogram's own ``check_response`` for an HTTP error (``{"status_code": 502, ...}``)
    or with ``TelegramNetworkError`` for ``"offline"`` (what aiogram's aiohttp session raises
    when Telegram is unreachable). ``down = None``: back to normal."""

    def __init__(self) -> None:
        super().__init__()
        self.down: dict[str, Any] | str | None = None

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        # As some of aiohttp's errors do, the messages quote the URL: the token is in it.
        url = f"https://api.telegram.org/bot{bot.token}/{method.__api_method__}"
        if self.down == "offline":
            raise TelegramNetworkError(method=method, message=f"TooManyRedirects: url={url!r}")
        if self.down == "too large":
            raise TelegramEntityTooLarge(method=method, message=f"Payload too large: {url}")
        if isinstance(self.down, dict):
            body = {"ok": False, "error_code": self.down["status_code"], **self.down}
            body.pop("status_code")
            self.check_response(
                bot=bot, method=method, status_code=body["error_code"], content=json.dumps(body)
            )
        return await super().make_request(bot, method, timeout)


async def answer(run: Run) -> None:
    assert run.message is not None
    # The first statement records the update id: a duplicate stops here, before the call.
    await run.uow.session.flush()
    await run.message.answer("thanks")  # an outgoing sendMessage, before the commit


TRANSIENT: dict[str, tuple[dict[str, Any] | str, str]] = {
    "server error": ({"status_code": 502, "description": "Bad Gateway"}, "1"),
    "flood limit": (
        {
            "status_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
        "7",
    ),
    "unreachable": ("offline", "1"),
}


@pytest.mark.parametrize("swallowed", [False, True], ids=["raised", "swallowed"])
@pytest.mark.parametrize("failure", list(TRANSIENT))
async def test_a_transient_bot_api_failure_is_answered_503_and_retried_once(
    db_settings: DatabaseSettings, failure: str, swallowed: bool
) -> None:
    session = FlakySession()
    session.down, retry_after = TRANSIENT[failure]
    app = scenario_app(db_settings, {"answer": answer}, session=session, swallow_errors=swallowed)
    observer = create_engine(db_settings)
    update = message_update("answer", update_id=next_update_id())
    try:
        async with running(app) as client:
            with capture_logs() as logs:
                down = await post_update(client, update)
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"] == retry_after
            assert await count_marks(observer, "answer") == 0  # rolled back
            assert await recorded_updates(observer) == []  # so the redelivery is applied
            [entry] = [e for e in logs if e.get("update_id") == update["update_id"]]
            assert entry["log_level"] == "warning" and "Bot API" in entry["event"]
            assert BOT_TOKEN not in str(entry)

            session.down = None
            session.clear()
            again = await post_update(client, update)
            twice = await post_update(client, update)
            assert (again.status_code, twice.status_code) == (200, 200)
            assert await count_marks(observer, "answer") == 1
            assert [c.params["text"] for c in session.calls("sendMessage")] == ["thanks"]
    finally:
        await observer.dispose()


@pytest.mark.parametrize(
    ("status_code", "description"),
    [(400, "Bad Request: chat not found"), (403, "Forbidden: bot was blocked by the user")],
)
async def test_a_permanent_bot_api_failure_is_rolled_back_and_acknowledged(
    db_settings: DatabaseSettings, status_code: int, description: str
) -> None:
    session = RecordingSession()
    session.fail("sendMessage", status_code=status_code, description=description)
    app = scenario_app(db_settings, {"answer": answer}, session=session)
    observer = create_engine(db_settings)
    update = message_update("answer", update_id=next_update_id())
    try:
        async with running(app) as client:
            with capture_logs() as logs:
                response = await post_update(client, update)
            assert response.status_code == 200
            assert await count_marks(observer, "answer") == 0
            [entry] = [e for e in logs if e.get("update_id") == update["update_id"]]
            assert entry["log_level"] == "error"
            assert description in entry["error"]
    finally:
        await observer.dispose()


async def test_a_permanent_failure_quoting_the_bot_token_is_logged_without_it(
    db_settings: DatabaseSettings,
) -> None:
    session = FlakySession()
    session.down = "too large"  # a network error subclass that a retry cannot cure
    app = scenario_app(db_settings, {"answer": answer}, session=session)
    update = message_update("answer", update_id=next_update_id())
    async with running(app) as client:
        with capture_logs() as logs:
            response = await post_update(client, update)
    assert response.status_code == 200
    [entry] = [e for e in logs if e.get("update_id") == update["update_id"]]
    assert entry["error_type"] == "TelegramEntityTooLarge"
    rendered = "".join(traceback.format_exception(entry["exc_info"]))
    assert "[secret]" in entry["error"] and "[secret]" in rendered
    assert BOT_TOKEN not in str(entry) and BOT_TOKEN not in rendered
    assert "in answer" in rendered  # still shows where it happened
