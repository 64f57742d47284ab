"""``python -m bench.inbox`` works: its servers (this project's app in both modes and
aiogram's aiohttp handler, real processes) start, acknowledge and apply updates, the crash
and the wire count run, and the report prints its figures and its verdicts. No ratio is
asserted (the figures are the benchmark's, the machine is shared); what is asserted is what
cannot depend on speed: every acknowledged update of the inbox is applied after SIGKILL and
restart, and a stored update costs the wire what it costs."""

from __future__ import annotations

import itertools

import pytest

from bench.common import Target, bench_database
from bench.inbox import (
    APP_VARIANTS,
    InboxRun,
    count_round_trips,
    create_tables,
    measure_acks,
    measure_crash,
    measure_processing,
    report,
    use_start_method,
)

pytestmark = [pytest.mark.postgres]


async def test_the_inbox_benchmark_runs_end_to_end_and_prints_its_verdicts(
    pg_available: None,
) -> None:
    use_start_method("fork")  # the servers start in milliseconds from this process
    ids = itertools.count(800_000_001)
    async with bench_database(Target(pool_size=4)) as target:
        await create_tables(target)
        acks = await measure_acks(target, ids, seconds=0.2, rounds=1, warmup=0.1)
        crashes = [
            await measure_crash(target, ids, variant, burst=40, wait=20)
            for variant in ("aiogram", "inbox")
        ]
        processing = await measure_processing(
            target, ids, insert_n=20, sleep_seconds=0.2, worker_counts=(2,)
        )
        wire = await count_round_trips(target, ids, 3)

    for variant in APP_VARIANTS:
        assert acks.rate(variant) > 0, variant
        assert all(not run.drive.errors for run in acks.of(variant)), variant
    inbox_crash = next(crash for crash in crashes if crash.variant == "inbox")
    assert inbox_crash.acked >= 20
    assert inbox_crash.lost == 0 and inbox_crash.dead == 0
    assert [(p.workers, p.handler) for p in processing] == [(2, "insert"), (2, "sleep")]
    assert all(p.drained and p.updates == p.acked and p.rate > 0 for p in processing)
    # A stored update costs the wire something (BEGIN, the INSERT with its NOTIFY, COMMIT),
    # a claim too (the claim, the handler's INSERT, COMMIT): counted, not guessed.
    for path in ("foreground", "inbox store", "inbox claim", "empty claim"):
        assert wire.counts[path].round_trips >= 1, path

    lines = report(InboxRun(acks, crashes, processing, wire))
    verdicts = [line for line in lines if line.startswith(("PASS:", "FAIL:"))]
    assert len(verdicts) == 3
    assert "x the updates/s of foreground mode" in verdicts[0]
    assert "x the updates/s of aiogram's background mode" in verdicts[1]
    assert verdicts[2].startswith("PASS: acknowledged but never applied after SIGKILL: inbox 0")
    text = "\n".join(lines)
    for label in ("this project, foreground", "aiogram aiohttp, background", "p50 ms"):
        assert label in text
    assert "round trips per update" in text
