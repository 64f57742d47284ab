"""``python -m bench.outbox`` works, tiny: the enqueue figures are positive and the sender's
delivery run keeps Telegram's limits by the fake server's clock. No timing assertion (the
figures are the benchmark's, not a test's)."""

from __future__ import annotations

import pytest

from bench.common import Target, bench_database
from bench.outbox import create_outbox_table, delivery, enqueue_cost, report

pytestmark = [pytest.mark.postgres]


async def test_the_outbox_benchmark_runs_and_keeps_the_limits(
    pg_available: None, capsys: pytest.CaptureFixture[str]
) -> None:
    async with bench_database(Target(pool_size=4)) as target:
        await create_outbox_table(target)
        ours, floor = await enqueue_cost(target, n=10, rounds=1)
        limited = await delivery(target, messages=20, repeated=1)

    assert ours > 0 and floor > 0
    assert limited.messages == 23
    assert limited.max_in_one_second <= 30
    assert limited.min_chat_gap >= 1.0
    assert limited.violations == 0
    report((ours, floor), limited, None)
    verdicts = [
        line for line in capsys.readouterr().out.splitlines() if line[:5] in ("PASS:", "FAIL:")
    ]
    assert len(verdicts) == 1
