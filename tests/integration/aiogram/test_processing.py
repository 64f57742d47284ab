"""Processing an update: the commit comes before the answer, errors roll back and are logged,
a returned method becomes the webhook answer, and an update that needs no database costs no
connection. Acceptance points 3, 4 and 7 of issue 4; every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.support.asgi import ResponseStartProbe
from tests.support.updates import (
    BOT_ID,
    callback_query_update,
    chat_join_request_update,
    edited_message_update,
    message_update,
    poll_update,
    pre_checkout_query_update,
    start_update,
    successful_payment_update,
)

from .aiogram_webhook_app import Harness

# -- 3. a handler writes and returns a method ------------------------------------------------


async def test_start_commits_before_the_answer_and_answers_with_the_method(
    harness: Harness,
) -> None:
    import httpx

    update = start_update(update_id=1001, user_id=42, first_name="Grace")
    probe = ResponseStartProbe(harness.app, lambda _scope: harness.count_events("start"))
    transport = httpx.ASGITransport(app=probe)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        harness.client = client
        response = await harness.post(update)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"method": "sendMessage", "chat_id": 42, "text": "Welcome, Grace!"}
    # The row was committed (visible from another connection) before the status line left.
    assert probe.seen == [1]
    [row] = await harness.events("start")
    assert (row.update_id, row.user_id, row.detail) == (1001, 42, None)
    assert await harness.recorded_updates() == [1001]
    # Answered in the webhook response: no second HTTP call to the Bot API.
    assert harness.session.requests == []


async def test_start_with_a_deep_link_code(harness: Harness) -> None:
    response = await harness.post(start_update("ref-abc", update_id=1002, user_id=43))

    assert response.status_code == 200
    assert response.json()["method"] == "sendMessage"
    [row] = await harness.events("start")
    assert (row.user_id, row.detail) == (43, "ref-abc")


async def test_successful_payment_is_recorded_and_thanked(harness: Harness) -> None:
    update = successful_payment_update(
        update_id=1003, user_id=44, payload="chapter-2", amount=50, charge_id="stxABC"
    )
    response = await harness.post(update)

    assert response.status_code == 200
    assert response.json() == {"method": "sendMessage", "chat_id": 44, "text": "Thank you!"}
    [row] = await harness.events("payment")
    assert (row.key, row.detail, row.user_id) == ("stxABC", "chapter-2:50XTR", 44)


async def test_text_and_edited_messages_are_written(harness: Harness) -> None:
    first = await harness.post(message_update("hello there", update_id=1004))
    second = await harness.post(edited_message_update("hello, edited", update_id=1005))

    assert (first.status_code, first.content) == (200, b"")
    assert (second.status_code, second.content) == (200, b"")
    assert [(e.kind, e.detail) for e in await harness.events()] == [
        ("text", "hello there"),
        ("edited", "hello, edited"),
    ]
    assert await harness.recorded_updates() == [1004, 1005]


async def test_callback_query_is_answered_in_the_response_without_a_connection(
    harness: Harness,
) -> None:
    update = callback_query_update("chapter:2", update_id=1006, query_id="cbq-1")
    response = await harness.post(update)

    assert response.status_code == 200
    assert response.json() == {
        "method": "answerCallbackQuery",
        "callback_query_id": "cbq-1",
        "text": "pressed chapter:2",
    }
    assert harness.calls_of("pressed") == [1006]
    assert harness.checkout_count == 0
    assert await harness.recorded_updates() == []


async def test_pre_checkout_query_is_confirmed_without_a_connection(harness: Harness) -> None:
    update = pre_checkout_query_update(update_id=1007, query_id="pcq-1", amount=50)
    response = await harness.post(update)

    assert response.status_code == 200
    assert response.json() == {
        "method": "answerPreCheckoutQuery",
        "pre_checkout_query_id": "pcq-1",
        "ok": True,
    }
    assert harness.checkout_count == 0


async def test_a_reply_with_a_keyboard_is_answered_as_nested_json(harness: Harness) -> None:
    response = await harness.post(message_update("menu", update_id=1009, user_id=47))

    assert response.json() == {
        "method": "sendMessage",
        "chat_id": 47,
        "text": "Choose:",
        "disable_notification": True,
        "reply_markup": {"inline_keyboard": [[{"text": "Next", "callback_data": "next"}]]},
    }


async def test_a_method_with_a_file_is_sent_through_the_bot_session(harness: Harness) -> None:
    response = await harness.post(message_update("file", update_id=1008, user_id=45))

    assert (response.status_code, response.content) == (200, b"")
    [request] = harness.session.requests
    assert request.name == "sendDocument"
    assert request.params["chat_id"] == 45
    assert request.params["document"].startswith("attach://")
    [attached] = request.files.values()
    assert attached.filename == "report.txt"


# -- 4. a handler writes and raises ------------------------------------------------------------


async def test_a_handler_error_rolls_back_is_logged_and_acknowledged(harness: Harness) -> None:
    with capture_logs() as logs:
        response = await harness.post(message_update("boom", update_id=1010))

    assert response.status_code == 200
    assert harness.calls_of("boom") == [1010]
    assert await harness.events() == []
    assert await harness.recorded_updates() == []  # rolled back: a retry would apply it
    [entry] = [e for e in logs if e.get("update_id") == 1010 and e["log_level"] == "error"]
    assert entry["error_type"] == "RuntimeError"
    assert "handler bug in boom" in entry["error"]
    assert entry.get("exc_info") is True

    # Telegram's retry of that update is processed again (and fails again): not "duplicate".
    again = await harness.post(message_update("boom", update_id=1010))
    assert again.status_code == 200
    assert harness.calls_of("boom") == [1010, 1010]


async def test_an_integrity_error_is_rolled_back_logged_and_acknowledged(
    harness: Harness,
) -> None:
    first = await harness.post(message_update("key:one", update_id=1011))
    assert first.json()["text"] == "saved"
    with capture_logs() as logs:
        response = await harness.post(message_update("key:one", update_id=1012))

    # Acknowledged (a retry cannot help), and no "saved" reply for what was not saved.
    assert (response.status_code, response.content) == (200, b"")
    assert [e.update_id for e in await harness.events("keyed")] == [1011]
    assert await harness.recorded_updates() == [1011]
    [entry] = [e for e in logs if e.get("update_id") == 1012]
    assert entry["log_level"] == "error"
    assert "integrity" in entry["event"]


# -- 7. an update nobody handles -----------------------------------------------------------------


@pytest.mark.parametrize(
    "update",
    [
        pytest.param(chat_join_request_update(update_id=1020), id="chat_join_request"),
        pytest.param(poll_update(update_id=1020), id="poll"),
    ],
)
async def test_an_unhandled_update_is_acknowledged_without_a_connection(
    harness: Harness, update: dict[str, Any]
) -> None:
    before = harness.checkout_count
    response = await harness.post(update)

    assert (response.status_code, response.content) == (200, b"")
    assert harness.calls == []
    assert harness.checkout_count == before == 0
    assert harness.checked_out == 0
    assert await harness.recorded_updates() == []
    assert harness.session.requests == []


async def test_each_answer_has_its_own_headers_under_a_header_adding_middleware(
    harness: Harness,
) -> None:
    """An ASGI middleware that appends to the start message's header list in place adds
    its header to one answer only: the webhook's empty 200 is not one shared Response."""
    import httpx
    from starlette.types import Message, Receive, Scope, Send

    app = harness.app

    async def appending(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_appending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-request-mark", b"1"))
            await send(message)

        await app(scope, receive, send_appending)

    transport = httpx.ASGITransport(app=appending)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        harness.client = client
        answers = [await harness.post(poll_update(update_id=1030 + n)) for n in range(3)]

    for answer in answers:
        assert (answer.status_code, answer.content) == (200, b"")
        assert answer.headers.get_list("x-request-mark") == ["1"]


async def test_a_handler_that_does_not_touch_the_database_uses_no_connection(
    harness: Harness,
) -> None:
    response = await harness.post(message_update("no-db", update_id=1021, user_id=46))

    assert response.json() == {"method": "sendMessage", "chat_id": 46, "text": "pong"}
    assert harness.checkout_count == 0
    assert harness.app.state.telegram.bot.id == BOT_ID
