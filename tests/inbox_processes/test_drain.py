"""SIGTERM drains a process: readiness off, new updates 503, work in flight finishes, then exit.

Inbox mode: 8 workers busy with slow handlers and 60 updates stored when SIGTERM arrives; two
of the handlers outlive ``drain_timeout``. The workers stop claiming, the handlers in flight
finish and commit, the two late ones are cancelled and rolled back to pending, and the
process exits within ``drain_timeout`` plus a small margin. A second process then applies
what is left: every update exactly once.

Foreground mode: 10 posts in flight (handlers sleeping 2 s) when SIGTERM arrives.
``/health/ready`` answers 503 at once, a new post gets 503 with ``Retry-After`` (and is not
applied), the 10 in flight are answered 200 and applied, and only then does the process exit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest

from .helpers import (
    HEADERS,
    InboxProcess,
    Observer,
    app_database,
    chat_update,
    check_exactly_once_in_chat_order,
    client_for,
    output_lines,
)
from .inbox_app import WEBHOOK_PATH

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DRAIN_MARK = "drain started"
EXIT_MARGIN = 3.0  # seconds past drain_timeout: uvicorn's and the lifespan's own shutdown


def before_drain(output: str) -> tuple[str, str]:
    """The child's output before and after its "drain started" log line."""
    index = output.find(DRAIN_MARK)
    assert index >= 0, output[-3000:]
    return output[:index], output[index:]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_sigterm_in_inbox_mode_finishes_in_flight_updates_and_exits_in_time(
    inbox_db: str, observer: Observer, processes: Callable[..., InboxProcess]
) -> None:
    drain_timeout = 4.0
    database = app_database(inbox_db)
    workers = 8
    bot = {
        "processing": "inbox",
        "workers": workers,
        "poll_interval": 0.5,
        "drain_timeout": drain_timeout,
    }
    first = processes(database, bot)
    await first.start_async()
    # Two handlers that outlive the drain, then 58 that take 1.5 s; one chat each.
    long_ids = [720_000_000, 720_000_001]
    texts = {update_id: "slow:30" for update_id in long_ids}
    texts.update({720_000_002 + n: "slow:1.5" for n in range(58)})
    expected = {update_id: 4_000_000 + n for n, update_id in enumerate(texts)}
    async with client_for(first.port) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    WEBHOOK_PATH,
                    content=chat_update(update_id, expected[update_id], text),
                    headers=HEADERS,
                )
                for update_id, text in texts.items()
            )
        )
    assert [answer.status_code for answer in answers] == [200] * len(texts)

    # SIGTERM in the middle: the long ones running, some short ones applied, most stored.
    async def mid_way() -> bool:
        started = set(output_lines(first.output(), "START"))
        return set(long_ids) <= started and await observer.applied_count() >= 6

    deadline = time.monotonic() + 30
    while not await mid_way():
        assert time.monotonic() < deadline, first.output()[-3000:]
        await asyncio.sleep(0.02)
    pid = first.pid
    applied_at_signal = await observer.applied_count()
    signalled = time.monotonic()
    first.terminate()
    code = await asyncio.to_thread(first.wait_exit, drain_timeout + 15)
    exit_after = time.monotonic() - signalled
    assert code in (0, -15), code

    before, after = before_drain(first.output())
    started_before = set(output_lines(before, "START"))
    ended_before = set(output_lines(before, "END"))
    in_flight = started_before - ended_before
    short_in_flight = in_flight - set(long_ids)
    ended_after = set(output_lines(after, "END"))
    claimed_after = set(output_lines(after, "START"))
    applied = await observer.applied()
    by_first = {int(row["update_id"]) for row in applied if int(row["pid"]) == pid}
    rows = await observer.inbox_rows(list(texts))

    # Work was in flight when the drain began: the short ones finished and were committed.
    assert set(long_ids) <= in_flight and short_in_flight, (in_flight, before[-2000:])
    assert short_in_flight <= ended_after and short_in_flight <= by_first
    # The long ones were cancelled at the deadline and rolled back: pending, no failed attempt.
    assert not (set(long_ids) & (ended_after | by_first))
    assert all(rows[i]["status"] == "pending" and rows[i]["attempts"] == 0 for i in long_ids)
    # The process stopped claiming: apart from a claim racing the signal, no new update
    # started, and most of the stored ones were left for the next process.
    assert len(claimed_after) <= workers, claimed_after
    left = [i for i, row in rows.items() if row["status"] == "pending"]
    assert len(left) == len(texts) - len(by_first) and len(left) >= 20, (
        len(left),
        applied_at_signal,
        first.output()[-6000:],
    )
    # It exited within the drain deadline and a small margin, not after the 30 s handlers.
    assert exit_after <= drain_timeout + EXIT_MARGIN, exit_after
    assert "Traceback" not in first.output(), first.output()[-3000:]

    # A second process (short handlers) applies what is left; each update exactly once.
    second = processes(database, bot, slow_cap=0.05)
    await second.start_async()
    deadline = time.monotonic() + 30
    while await observer.applied_count() < len(texts) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # no late extra application
    assert await observer.inbox_counts() == {"done": len(texts)}
    applied = await observer.applied()
    check_exactly_once_in_chat_order(applied, expected)
    print(
        f"\ninbox drain: SIGTERM with {applied_at_signal} of {len(texts)} applied and"
        f" {len(in_flight)} in flight ({len(short_in_flight)} short, 2 outliving the"
        f" {drain_timeout:.0f} s deadline); exited {exit_after:.2f} s after SIGTERM (code {code});"
        f" applied by it {len(by_first)}, claims racing the signal {len(claimed_after)},"
        f" left pending {len(left)}; per process {dict(Counter(int(r['pid']) for r in applied))}"
    )


async def test_sigterm_in_foreground_mode_answers_in_flight_posts_then_exits(
    inbox_db: str, observer: Observer, processes: Callable[..., InboxProcess]
) -> None:
    drain_timeout = 10.0
    bot = {"processing": "foreground", "drain_timeout": drain_timeout}
    app = processes(app_database(inbox_db), bot)
    await app.start_async()
    in_flight = {730_000_000 + n: 5_000_000 + n for n in range(10)}
    late_id = 730_000_100

    async with client_for(app.port) as client:
        assert (await client.get("/health/ready")).status_code == 200
        posts = [
            asyncio.create_task(
                client.post(WEBHOOK_PATH, content=chat_update(i, chat, "slow:2"), headers=HEADERS)
            )
            for i, chat in in_flight.items()
        ]
        await wait_until(
            lambda: set(output_lines(app.output(), "START")) == set(in_flight),
            20,
            "the 10 handlers to start",
        )
        signalled = time.monotonic()
        app.terminate()

        # Readiness turns 503 as soon as the drain starts (fresh connections: a balancer's
        # probe), while the handlers still sleep.
        async with client_for(app.port) as probe:
            while (ready := await probe.get("/health/ready")).status_code != 503:
                assert time.monotonic() - signalled < 3.0, ready.text
                await asyncio.sleep(0.02)
            ready_off = time.monotonic() - signalled
            assert ready.json()["status"] == "draining"
            late = await probe.post(
                WEBHOOK_PATH, content=chat_update(late_id, 5_000_100), headers=HEADERS
            )
        assert late.status_code == 503 and int(late.headers["Retry-After"]) > 0, late
        assert not any(post.done() for post in posts)
        assert not app.exited()

        answers = await asyncio.gather(*posts)
        answered = time.monotonic() - signalled
    assert [answer.status_code for answer in answers] == [200] * len(posts)
    assert await observer.applied_count() == len(in_flight)

    code = await asyncio.to_thread(app.wait_exit, drain_timeout + 15)
    exit_after = time.monotonic() - signalled
    assert code in (0, -15), code
    # The handlers took 2 s: the process waited for them, then stopped promptly.
    assert answered <= exit_after <= drain_timeout + EXIT_MARGIN
    check_exactly_once_in_chat_order(await observer.applied(), in_flight)
    assert late_id not in output_lines(app.output(), "START")
    assert "Traceback" not in app.output(), app.output()[-3000:]
    print(
        f"\nforeground drain: 10 posts in flight (2 s handlers); /health/ready 503 after"
        f" {ready_off * 1000:.0f} ms; late post 503 Retry-After {late.headers['Retry-After']};"
        f" in-flight answered 200 after {answered:.2f} s; exited {exit_after:.2f} s after"
        f" SIGTERM (code {code})"
    )
