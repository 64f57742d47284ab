"""Issue 11, points 12-14 and 16, through the real webhook and API on SQLite and PostgreSQL.

12: values the database cannot hold are stopped at the edge: a refused update is
acknowledged (200) with one log line and no traceback, and touches no table; display text
is stored cut and without NUL. 13: /api/stats sums any accepted amounts exactly.
14: only the premium payload is thanked with "premium unlocked". 16: the documentation
routes can be switched off, and the OpenAPI document declares the bearer scheme and every
status the API answers.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from app.services import PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR
from db_manager import DatabaseSettings
from tests.e2e.edge_support import BIGINT_MAX, EdgeApp, edge_app, limit_violations, tracebacks
from tests.e2e.outbox_support import recorded
from tests.support.updates import start_update, successful_payment_update, text_update

USER = 7_100_001
REFUSED = "update refused at the edge"


@pytest.fixture
async def edge(db_settings: DatabaseSettings) -> Any:
    async with edge_app(db_settings) as running_app:
        yield running_app


async def _refused_once(
    edge: EdgeApp, update: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> MutableMapping[str, Any]:
    """Post ``update``; it must be acknowledged with exactly one refusal line; return it."""
    caplog.clear()
    with capture_logs() as logs:
        response = await edge.post(update)
    assert response.status_code == 200, response.text
    assert response.content == b""  # acknowledged, nothing answered
    refusals = [entry for entry in logs if entry["event"] == REFUSED]
    assert len(refusals) == 1, logs
    assert tracebacks(logs, caplog.records) == []
    return refusals[0]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: start_update(user_id=2**63), "user id"),
        (lambda: start_update(user_id=2**64 + 7), "user id"),
        (lambda: start_update(user_id=0), "user id"),
        (lambda: start_update(user_id=-5), "user id"),
        (lambda: start_update(user_id=-(2**63) - 1), "user id"),
        (lambda: start_update(update_id=2**63, user_id=USER), "update_id"),
        (lambda: start_update(update_id=-1, user_id=USER), "update_id"),
    ],
)
async def test_ids_beyond_the_columns_are_refused_before_any_statement(
    edge: EdgeApp,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[], dict[str, Any]],
    field: str,
) -> None:
    refusal = await _refused_once(edge, make(), caplog)
    assert refusal["field"] == field
    for table in ("app__users", "app__novel_messages", "db_manager__telegram_updates"):
        assert await edge.count(table) == 0, table


async def test_the_largest_ids_are_accepted(edge: EdgeApp) -> None:
    response = await edge.post(start_update(update_id=BIGINT_MAX, user_id=BIGINT_MAX))
    assert response.status_code == 200
    assert response.json()["method"] == "sendMessage"
    assert await edge.rows("SELECT telegram_id FROM app__users") == [(BIGINT_MAX,)]


async def test_names_and_texts_are_stored_cut_to_their_columns_and_without_nul(
    edge: EdgeApp,
) -> None:
    update = start_update(user_id=USER)
    sender = update["message"]["from"]
    sender.update(
        first_name="F\x00" + "é" * 1000,
        last_name="L" * 300 + "\x00",
        username="u" * 500,
        language_code="en-" + "x" * 100,
    )
    # A deep link whose "code" is no code (NUL, far too long), in a 100 000-character text.
    text = "/start \x00" + "ab" * 50_000
    update["message"]["text"] = text
    response = await edge.post(update)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["method"] == "sendMessage"
    assert "invitation link is not valid" in answer["text"]

    [(first, last, username, language)] = await edge.rows(
        "SELECT first_name, last_name, username, language_code FROM app__users"
    )
    assert (first, last, username, language) == (
        ("F" + "é" * 1000)[:256],
        "L" * 256,
        "u" * 64,
        ("en-" + "x" * 100)[:35],
    )
    logged = await edge.rows(
        "SELECT text FROM app__novel_messages WHERE direction = 'in' ORDER BY id"
    )
    assert logged == [(text.replace("\x00", "")[:4096],)]
    assert await limit_violations(edge) == {}


def _payment(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "user_id": USER,
        "payload": PREMIUM_PAYLOAD,
        "amount": PREMIUM_PRICE_XTR,
        "currency": "XTR",
        "charge_id": "stx-edge-1",
    }
    values.update(changes)
    return successful_payment_update(**values)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": 2**63}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -50}, "amount"),
        ({"currency": "xtr"}, "currency"),
        ({"currency": "XTR\x00"}, "currency"),
        ({"currency": "XTRXTRXTR"}, "currency"),
        ({"payload": "p" * 129}, "invoice payload"),
        ({"payload": "premium\x00unlock"}, "invoice payload"),
        ({"charge_id": "c" * 256}, "telegram payment charge id"),
        ({"charge_id": "stx\x00"}, "telegram payment charge id"),
        ({"provider_charge_id": "p" * 256}, "provider payment charge id"),
    ],
)
async def test_payments_that_do_not_fit_are_refused_and_nothing_is_unlocked(
    edge: EdgeApp, caplog: pytest.LogCaptureFixture, changes: dict[str, Any], field: str
) -> None:
    assert (await edge.post(start_update(user_id=USER))).status_code == 200
    refusal = await _refused_once(edge, _payment(**changes), caplog)
    assert refusal["field"] == field
    assert await edge.count("app__payments") == 0
    assert await edge.rows("SELECT premium FROM app__novel_states") in ([(False,)], [(0,)])


async def test_amounts_beyond_32_bits_are_recorded_exactly(edge: EdgeApp) -> None:
    assert (await edge.post(start_update(user_id=USER))).status_code == 200
    response = await edge.post(_payment(amount=2**31, payload="tip", charge_id="stx-big"))
    assert response.status_code == 200, response.text
    assert await edge.rows("SELECT amount FROM app__payments") == [(2**31,)]


async def test_stats_sum_any_accepted_amounts_exactly(edge: EdgeApp) -> None:
    assert (await edge.post(start_update(user_id=USER))).status_code == 200
    for number in range(3):
        update = _payment(amount=BIGINT_MAX, payload="tip", charge_id=f"stx-max-{number}")
        assert (await edge.post(update)).status_code == 200
    for _ in range(2):  # and again: the sum is no one-off
        response = await edge.api("/api/stats")
        assert response.status_code == 200, response.text
        assert response.json()["payments"] == 3
        assert response.json()["payments_sum"] == 3 * BIGINT_MAX


async def test_only_the_premium_payload_is_thanked_with_premium(edge: EdgeApp) -> None:
    assert (await edge.post(start_update(user_id=USER))).status_code == 200
    # The thank-yous leave through the outbox, after the webhook's (empty) answer.
    other = await edge.post(_payment(payload="tip-the-author", charge_id="stx-tip"))
    assert other.status_code == 200
    [thanks] = await recorded(edge.telegram, "sendMessage")
    assert thanks.params["text"] == "Thank you! Your payment was received."
    assert await edge.rows("SELECT premium FROM app__novel_states") in ([(False,)], [(0,)])

    premium = await edge.post(_payment(charge_id="stx-premium"))
    assert premium.status_code == 200
    thanks = (await recorded(edge.telegram, "sendMessage", 2))[1]
    assert "premium branch of the story is unlocked" in thanks.params["text"]
    assert await edge.rows("SELECT premium FROM app__novel_states") in ([(True,)], [(1,)])


DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


async def test_documentation_can_be_switched_off(db_settings: DatabaseSettings) -> None:
    async with edge_app(db_settings, docs=False) as edge:
        for path in DOC_PATHS:
            assert (await edge.client.get(path)).status_code == 404, path
        assert (await edge.api("/api/stats")).status_code == 200  # the API itself stays
    async with edge_app(db_settings) as edge:
        for path in DOC_PATHS:
            assert (await edge.client.get(path)).status_code == 200, path


async def test_openapi_declares_the_bearer_scheme_and_every_status(edge: EdgeApp) -> None:
    document = (await edge.client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")]
    [name] = schemes
    operations = {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == {
        ("/api/stats", "get"),
        ("/api/users/{telegram_id}", "get"),
        ("/api/users/{telegram_id}/payments", "get"),
        ("/api/users/{telegram_id}/premium", "post"),  # idempotency keys: 400 and 409 too
        ("/api/broadcast", "post"),  # 202: enqueued; 422: a text Telegram cannot send
    }
    for (path, method), operation in operations.items():
        assert operation["security"] == [{name: []}], path
        success = "202" if path == "/api/broadcast" else "200"
        expected = {success, "401", "503"} | ({"404", "422"} if "{" in path else set())
        expected |= {"400", "409"} if method == "post" else set()
        expected |= {"422"} if path == "/api/broadcast" else set()
        assert set(operation["responses"]) == expected, path
    # And the statuses are the ones answered: 401 without a token, 422 and 404 with it.
    assert (await edge.api("/api/stats", token=None)).status_code == 401
    assert (await edge.api("/api/users/0")).status_code == 422
    assert (await edge.api("/api/users/1")).status_code == 404


async def test_feedback_with_nul_is_stored_without_it(
    edge: EdgeApp, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await edge.post(start_update(user_id=USER))).status_code == 200
    with capture_logs() as logs:
        for text in ("/feedback", "Loved\x00 the ending", "yes"):
            response = await edge.post(text_update(text, user_id=USER))
            assert response.status_code == 200, response.text
    assert tracebacks(logs, caplog.records) == []
    assert await edge.rows("SELECT text FROM app__feedback") == [("Loved the ending",)]
    assert await limit_violations(edge) == {}
