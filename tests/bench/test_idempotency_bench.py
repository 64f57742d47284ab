"""``python -m bench.idempotency`` works, and what it counts on the wire is the contract of
issue 16: a key adds two statements (the key's INSERT and the stored response's UPDATE) and
no transaction. No timing assertion (the figures are the benchmark's, not a test's)."""

from __future__ import annotations

import pytest

from bench.common import Target, bench_database
from bench.idempotency import VARIANTS, count_pass, create_key_table, report, timing_pass

pytestmark = [pytest.mark.postgres]


async def test_the_benchmark_counts_two_more_statements_and_no_transaction_for_a_key(
    pg_available: None, capsys: pytest.CaptureFixture[str]
) -> None:
    async with bench_database(Target(pool_size=2)) as target:
        await create_key_table(target)
        counts = await count_pass(target, n=5)
        timings = await timing_pass(target, n=3, rounds=1)

    assert counts["new key"].statements - counts["no key"].statements == 2
    assert counts["new key"].round_trips - counts["no key"].round_trips == 2
    assert {counts[variant].transactions for variant in VARIANTS} == {1.0}
    assert counts["replay"].statements < counts["new key"].statements  # the handler did not run
    assert all(timings[variant] > 0 for variant in VARIANTS)
    assert report(counts, timings) is True
    verdicts = [
        line for line in capsys.readouterr().out.splitlines() if line[:5] in ("PASS:", "FAIL:")
    ]
    assert len(verdicts) == 1 and verdicts[0].startswith("PASS:")
