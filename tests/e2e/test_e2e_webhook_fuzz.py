"""Bounded webhook fuzz (issue 11): 1,000 mutated real updates through the real app.

Real update JSON (``tests.support.updates``: /start with and without a code, /ref, /buy,
/feedback and its answers,
story buttons, pre-checkout queries, successful payments, edits, polls, join requests) is
mutated by a seeded generator: huge, negative and boundary ids, long and unicode strings,
NULs, nulls, wrong types, deep nesting, deleted and unknown keys, and broken bodies. A
third of the updates come from a handful of registered users, so mutations reach the
services (payments, referrals, the story) and not only the parser. On each backend:

* no answer is a 5xx (400 for a body that is no Update; 200 otherwise);
* no log entry carries a traceback or is an error (structlog's and the standard library's);
* afterwards no row in any app table breaks a limit of the edge (``limit_violations``).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

import pytest
from structlog.testing import capture_logs

from app.services import PREMIUM_PAYLOAD, PREMIUM_PRICE_XTR
from app.story import load_story
from db_manager import DatabaseSettings
from tests.e2e.edge_support import edge_app, limit_violations, tracebacks
from tests.support.updates import (
    callback_query_update,
    chat_join_request_update,
    edited_message_update,
    encode,
    poll_update,
    pre_checkout_query_update,
    start_update,
    successful_payment_update,
    text_update,
)

pytestmark = pytest.mark.slow

SEED = 20_261_201
UPDATES = 1_000
USERS = (4_000_001, 4_000_002, 4_000_003)

INTS: tuple[int, ...] = (
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
)
INTS += (-(2**63) - 1, 2**64, 10**30, -(10**30))
STRINGS = (
    "",
    "\x00",
    "a\x00b",
    "premium_unlock\x00",
    "é" * 300,
    "👍" * 200,
    "\u202eevil\u202c",
    "e\u0301" * 100,
    "'; DROP TABLE app__users; --",
    "%s%n{0}",
    "\\u0000",
    "XTR",
    "xtr",
)
LENGTHS = (33, 65, 129, 256, 257, 4_097, 100_000)


def _deep(rng: random.Random) -> Any:
    value: Any = rng.choice([1, "x", None])
    for _ in range(rng.choice([20, 60, 300])):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _value(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(INTS)
    if kind < 0.6:
        return rng.choice(STRINGS)
    if kind < 0.75:
        return rng.choice("xé\x00👍") * rng.choice(LENGTHS)
    if kind < 0.85:
        return rng.choice([None, True, False, 1.5, 1e308, -0.0, [], {}, [1, "a"], {"id": 1}])
    return _deep(rng)


def _value_like(rng: random.Random, old: Any) -> Any:
    """Mostly a value of the old one's type (so the update still parses and reaches the
    handlers), sometimes anything at all (wrong types, nulls, nesting)."""
    if rng.random() < 0.25:
        return _value(rng)
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return rng.choice(INTS)
    if isinstance(old, str):
        if rng.random() < 0.5:
            return rng.choice(STRINGS)
        return rng.choice("xé\x00👍") * rng.choice(LENGTHS)
    return _value(rng)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(rng: random.Random, update: dict[str, Any]) -> None:
    for _ in range(rng.choice([1, 1, 2, 3])):
        paths = _paths(update)
        # Ids and amounts are where the database's types end: pick them more often.
        numeric = [p for p in paths if str(p[-1]).endswith("id") or p[-1] == "total_amount"]
        path = rng.choice(numeric if numeric and rng.random() < 0.5 else paths)
        parent: Any = update
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.1 and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action < 0.15 and isinstance(parent, dict):
            parent[rng.choice(["unknown", "extra_field", "via_bot"])] = _value(rng)
        else:
            parent[path[-1]] = _value_like(rng, parent[path[-1]])


def _base(rng: random.Random, choices: list[str]) -> dict[str, Any]:
    user = rng.choice(USERS) if rng.random() < 0.7 else rng.randrange(1, 2**40)
    builders = [
        lambda: start_update(user_id=user),
        lambda: start_update("abcDEF12", user_id=user),
        lambda: text_update("/ref", user_id=user),
        lambda: text_update("/buy", user_id=user),
        lambda: text_update("hello", user_id=user),
        lambda: text_update("/feedback", user_id=user),
        lambda: text_update("yes", user_id=user),
        lambda: callback_query_update(f"choice:{rng.choice(choices)}", user_id=user),
        lambda: pre_checkout_query_update(
            user_id=user, payload=PREMIUM_PAYLOAD, amount=PREMIUM_PRICE_XTR
        ),
        lambda: successful_payment_update(
            user_id=user,
            payload=rng.choice([PREMIUM_PAYLOAD, "tip"]),
            amount=PREMIUM_PRICE_XTR,
            charge_id=f"stx-{rng.randrange(10**9)}",
        ),
        lambda: edited_message_update(user_id=user),
        lambda: chat_join_request_update(user_id=user),
        lambda: poll_update(),
    ]
    return rng.choice(builders)()


def _body(rng: random.Random, update: dict[str, Any]) -> dict[str, Any] | bytes:
    """Mostly the mutated update as JSON; sometimes a body that is no JSON Update at all."""
    roll = rng.random()
    if roll < 0.9:
        return update
    raw = encode(update)
    if roll < 0.93:
        return raw[: rng.randrange(1, len(raw))]  # cut short
    if roll < 0.95:
        return raw.replace(b'"', b"\xff\xfe", 1)  # invalid UTF-8
    if roll < 0.97:
        return rng.choice([b"[]", b"null", b"42", b'"update"', b"{}"])
    return b'{"update_id": 1, "message": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"


async def test_fuzzed_updates_never_fail_and_never_store_what_the_columns_cannot_hold(
    db_settings: DatabaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(SEED)
    story = load_story()
    choices = [choice.id for scene in story.scenes.values() for choice in scene.choices]
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    async with edge_app(db_settings) as edge:
        for user in USERS:  # known users, so mutations reach the services
            assert (await edge.post(start_update(user_id=user))).status_code == 200
        started = time.perf_counter()
        with capture_logs() as logs:
            for _ in range(UPDATES):
                update = _base(rng, choices)
                _mutate(rng, update)
                body = _body(rng, update)
                response = await edge.post(body)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    shown = body if isinstance(body, bytes) else json.dumps(body)
                    server_errors.append(f"{response.status_code} {shown[:300]!r}")
        elapsed = time.perf_counter() - started
        violations = await limit_violations(edge)
        users = await edge.count("app__users")
        payments = await edge.count("app__payments")
    refused = Counter(
        str(e.get("field")) for e in logs if e["event"] == "update refused at the edge"
    )
    print(
        f"\nfuzz [{edge.db.dialect.name}] seed={SEED}: {UPDATES} updates in {elapsed:.1f}s,"
        f" statuses {dict(sorted(statuses.items()))}, refused at the edge {sum(refused.values())}"
        f" {dict(refused.most_common())}, rows: {users} users, {payments} payments"
    )
    assert server_errors == []
    assert tracebacks(logs, caplog.records) == []
    assert violations == {}
    assert set(statuses) <= {200, 400}
    assert sum(refused.values()) > 0  # the mutations did reach the edge checks
