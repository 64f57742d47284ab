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
from collections.abc import Callable

import pytest

from .helpers import (
    Deliveries,
    InboxProcess,
    Observer,
    app_database,
    chat_update,
    check_exactly_once_in_chat_order,
    deliver,
    poster,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

UPDATES = 300
CHATS = 30
FIRST_UPDATE_ID = 710_000_000
CUT_AT = (40, 100, 160, 220)  # applied updates
AHEAD = 100
BOUND = 45.0  # seconds after the last post by which everything must be applied


async def test_terminated_backends_lose_and_double_nothing_and_processing_resumes(
    inbox_db: str, observer: Observer, processes: Callable[..., InboxProcess]
) -> None:
    database = app_database(inbox_db)
    bot = {"processing": "inbox", "workers": 4, "poll_interval": 0.5, "retry_base": 0.2}
    app = processes(database, bot)
    await app.start_async()
    name = database.application_name

    expected = {FIRST_UPDATE_ID + n: 3_000_000 + n % CHATS for n in range(UPDATES)}
    seen = Deliveries()
    cuts: list[tuple[int, int]] = []  # (applied when cut, backends terminated)

    async def cut_connections() -> None:
        for threshold in CUT_AT:
            while (applied := await observer.applied_count()) < threshold:
                await asyncio.sleep(0.05)
            cuts.append((applied, await observer.terminate_app_backends(name)))

    started = time.monotonic()
    async with poster(app.port) as client:
        cutter = asyncio.create_task(cut_connections())
        try:
            ids = list(expected)
            for start in range(0, UPDATES, CHATS):
                while len(seen.acknowledged) - await observer.applied_count() > AHEAD:
                    await asyncio.sleep(0.05)
                await asyncio.gather(
                    *(
                        deliver([client], update_id, chat_update(update_id, chat), seen)
                        for update_id in ids[start : start + CHATS]
                        for chat in [expected[update_id]]
                    )
                )
            posted = time.monotonic()
            await asyncio.wait_for(cutter, BOUND)
        finally:
            cutter.cancel()
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
