"""``python -m bench.fsm`` works: every storage variant processes updates and the report
prints its verdict. No timing assertion (the figures are the benchmark's, not a test's)."""

from __future__ import annotations

import pytest

from bench.common import Target, bench_database
from bench.fsm import SCENARIOS, VARIANTS, measure, report

pytestmark = [pytest.mark.postgres]


async def test_every_storage_variant_runs_and_the_report_has_a_verdict(
    pg_available: None,
) -> None:
    async with bench_database(Target(pool_size=2)) as target:
        results = await measure(target, seconds=0.2, rounds=1, concurrency=2, users=3)
    for scenario in SCENARIOS:
        for variant in VARIANTS:
            assert results.median(scenario, variant) > 0, (scenario, variant)
    text = report(results)
    verdicts = [line for line in text.splitlines() if line.startswith(("PASS:", "FAIL:"))]
    assert len(verdicts) == 1
    assert "RedisStorage on the fsm+row handler" in verdicts[0]
