"""PostgreSQL cuts the app's connections (``pg_terminate_backend``) while updates are processed.

One app process in inbox mode, 4 workers; 300 updates over 30 chats posted 30 at a time as
Telegram would (redelivered until a 200). Four times during the processing every backend of
the app is terminated: handlers' transactions, the webhook's stores, idle pooled connections
and the LISTENing one. Nothing may be lost or doubled, per-chat order holds, and the
processing resumes by itself: no restart, no operator.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .helpers import Deliveries, InboxMode, Observer, check_exactly_once_in_chat_order, post_during

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

UPDATES = 300
CHATS = 30
FIRST_UPDATE_ID = 710_000_000
CUT_AT = (40, 100, 160, 220)  # applied updates
AHEAD = 100
BOUND = 45.0  # seconds after the last post by which everything must be applied


async def test_terminated_backends_lose_and_double_nothing_and_processing_resumes(
    observer: Observer, inbox_mode: InboxMode
) -> None:
    (app,) = await inbox_mode.start(1)
    name = inbox_mode.database.application_name

    expected = {FIRST_UPDATE_ID + n: 3_000_000 + n % CHATS for n in range(UPDATES)}
    seen = Deliveries()
    cuts: list[tuple[int, int]] = []  # (applied when cut, backends terminated)

    async def cut_connections() -> None:
        for threshold in CUT_AT:
            while (applied := await observer.applied_count()) < threshold:
                await asyncio.sleep(0.05)
            cuts.append((applied, await observer.terminate_app_backends(name)))

    started = time.monotonic()
    posted = await post_during(
        cut_connections,
        [app.port],
        expected,
        seen,
        observer,
        batch=CHATS,
        ahead=AHEAD,
        timeout=BOUND,
    )
    assert seen.acknowledged == set(expected)
    assert len(cuts) == len(CUT_AT) and all(count > 0 for _, count in cuts), cuts

    while await observer.applied_count() < UPDATES and time.monotonic() < posted + BOUND:
        await asyncio.sleep(0.1)
    resumed_in = time.monotonic() - posted
    assert await observer.inbox_counts() == {"done": UPDATES}, await observer.inbox_counts()
    check_exactly_once_in_chat_order(await observer.applied(), expected)

    # The listener is back on a new connection of its own (LISTEN is its last statement).
    async def listening() -> bool:
        backends = await observer.app_backends(name)
        return any((row["query"] or "").upper().startswith("LISTEN") for row in backends)

    deadline = time.monotonic() + 10
    while not await listening() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await listening()
    assert not app.exited()
    output = app.output()
    assert "Traceback" not in output, output[-3000:]
    transient = output.count("update failed transiently")
    print(
        f"\nterminated backends: {UPDATES} updates / {CHATS} chats; cuts (applied, backends"
        f" terminated) {cuts}; all applied {resumed_in:.1f} s after the last post"
        f" ({time.monotonic() - started:.1f} s in all); answers {dict(seen.statuses)},"
        f" transport failures {dict(seen.failures)}, redelivered {seen.retried},"
        f" Retry-After seen {sorted(seen.retry_after_seen)}; handler transactions cut and"
        f" retried {transient}"
    )
