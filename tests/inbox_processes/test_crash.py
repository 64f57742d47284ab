"""A process killed (SIGKILL) in the middle of the load: nothing lost, nothing applied twice.

Two app processes in inbox mode, 4 workers each, on one database. 2,000 updates over 100
chats are posted 40 at a time, alternating between the two ports, as Telegram would: an
update is acknowledged only by a 200, and a delivery that fails (refused, cut, 503) is
retried on the other process. Telegram sends a chat's next update only once the previous one
was acknowledged; here a batch of 40 (40 different chats) is posted once the batch before it
is acknowledged, so a chat's updates are stored in update_id order. Once about a third is
applied, process A is killed with SIGKILL and started again on its port.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from .helpers import Deliveries, InboxMode, Observer, check_exactly_once_in_chat_order, post_during

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

UPDATES = 2000
CHATS = 100
BATCH = 40
FIRST_UPDATE_ID = 700_000_000
# The posting side keeps at most this many acknowledged-but-not-applied updates, so that the
# kill and the restart happen while updates are still being posted.
AHEAD = 600


async def test_sigkill_of_one_of_two_processes_loses_and_doubles_nothing(
    observer: Observer, inbox_mode: InboxMode
) -> None:
    a, b = await inbox_mode.start(2)
    first_pids = {a.pid, b.pid}

    expected = {FIRST_UPDATE_ID + n: 2_000_000 + n % CHATS for n in range(UPDATES)}
    seen = Deliveries()
    kill_at = UPDATES // 3
    figures: dict[str, float] = {}
    killed = asyncio.Event()

    async def kill_and_restart() -> None:
        while await observer.applied_count() < kill_at:
            await asyncio.sleep(0.05)
        figures["applied_at_kill"] = await observer.applied_count()
        figures["acknowledged_at_kill"] = len(seen.acknowledged)
        figures["killed_after"] = time.monotonic() - started
        down = time.monotonic()
        a.kill()
        killed.set()
        # A stays down while 100 more updates are acknowledged (by B), then starts again.
        while len(seen.acknowledged) < figures["acknowledged_at_kill"] + 100:
            assert time.monotonic() - down < 60, seen
            await asyncio.sleep(0.05)
        await a.start_async()
        figures["downtime"] = time.monotonic() - down
        figures["acknowledged_at_restart"] = len(seen.acknowledged)

    started = time.monotonic()
    ports = [a.port, b.port]
    acknowledged = await post_during(
        kill_and_restart, ports, expected, seen, observer, batch=BATCH, ahead=AHEAD, timeout=60
    )
    posted = acknowledged - started
    assert killed.is_set()
    assert seen.acknowledged == set(expected)

    deadline = time.monotonic() + 60
    while await observer.applied_count() < UPDATES and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    applied_in = time.monotonic() - started
    # Nothing is left behind in the inbox, nothing dead, and no late extra application.
    await asyncio.sleep(1.0)
    assert await observer.inbox_counts() == {"done": UPDATES}
    applied = await observer.applied()
    check_exactly_once_in_chat_order(applied, expected)

    by_pid = Counter(int(row["pid"]) for row in applied)
    restarted_pid = a.pid
    print(
        f"\ncrash: {UPDATES} updates / {CHATS} chats; A killed after"
        f" {figures['killed_after']:.1f} s at {figures['applied_at_kill']:.0f}"
        f" applied, {figures['acknowledged_at_kill']:.0f} acknowledged; A back after"
        f" {figures['downtime']:.1f} s ({figures['acknowledged_at_restart']:.0f} acknowledged"
        f" by then); posting took {posted:.1f} s, all applied after {applied_in:.1f} s;"
        f" answers {dict(seen.statuses)}, transport failures {dict(seen.failures)},"
        f" updates redelivered {seen.retried}; applied per process {dict(by_pid)}"
    )
    # All three processes (A before the kill, B, A after the restart) applied updates.
    assert set(by_pid) == first_pids | {restarted_pid}, by_pid
    # Posts to A failed while it was down and were retried on B.
    assert sum(seen.failures.values()) > 0 and seen.retried > 0, seen
