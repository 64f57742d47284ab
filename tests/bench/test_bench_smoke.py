"""The benchmark's code works: a handful of in-process iterations, no timing assertions.

The benchmark itself (``python -m bench``) is never run by ``make test``; this only proves
that every app builds, starts, answers 2xx on every endpoint it serves, and that the CPU
measurement, the round-trip counting and the report run end to end.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bench.apps import SQLITE_VARIANTS
from bench.common import Target, bench_database, bench_sqlite_database
from bench.cpu import CPU_VARIANTS, measure_cpu
from bench.endpoints import SERVES
from bench.hops import count_thread_hops
from bench.report import (
    SQLITE_HEADING,
    BenchRun,
    markdown,
    sqlite_markdown,
    targets,
    write_document,
)
from bench.roundtrips import count_round_trips

pytestmark = [
    # advanced-alchemy (the peer variant) still applies a decorator SQLAlchemy 2.1 deprecates.
    pytest.mark.filterwarnings("ignore:The declarative_mixin decorator:DeprecationWarning"),
]


@pytest.mark.postgres
async def test_the_in_process_measurement_and_the_report_run_end_to_end(
    pg_available: None,
) -> None:
    batch = {
        "noop": 3,
        "item": 2,
        "bump": 2,
        "ready": 2,
        "read_orm": 2,
        "read_core": 2,
        "webhook": 2,
    }
    async with bench_database(Target(pool_size=2)) as target:
        cpu = await measure_cpu(target, rounds=1, batch=batch, log=False)
        wire = await count_round_trips(target, variants=("project", "baseline", "aiohttp"), n=2)

    for variant in CPU_VARIANTS:
        for endpoint in SERVES[variant]:
            series = cpu.series[(variant, endpoint.key)]
            assert len(series.samples) == 1
            assert series.errors == 0
    assert wire[("project", "noop")].round_trips == 0
    assert wire[("project", "read_core")].round_trips == 1
    assert wire[("aiohttp", "webhook")].round_trips > 0

    run = BenchRun(mode="quick", started=dt.datetime.now(dt.UTC), cpu=cpu, wire=wire)
    document = markdown(run, targets(run), "notes")
    assert "## CPU per request, in-process" in document
    assert "GET /noop costs 0 database round trips" in document
    assert "round trips saved per request by the read path" in document


async def test_the_sqlite_mode_runs_end_to_end_and_keeps_the_postgresql_part(
    tmp_path: Path,
) -> None:
    batch = {"noop": 3, "item": 2, "bump": 2, "ready": 2, "read_orm": 2, "read_core": 2}
    async with bench_sqlite_database(Target(pool_size=2)) as target:
        cpu = await measure_cpu(target, rounds=1, batch=batch, variants=SQLITE_VARIANTS, log=False)
        hops = await count_thread_hops(target, variants=SQLITE_VARIANTS, n=2)

    for variant in SQLITE_VARIANTS:
        for endpoint in SERVES[variant]:
            assert cpu.series[(variant, endpoint.key)].errors == 0
    assert hops[("project", "noop")] == 0
    assert 0 < hops[("project", "item")] <= hops[("baseline", "item")]

    run = BenchRun(
        mode="quick", started=dt.datetime.now(dt.UTC), backend="sqlite", cpu=cpu, hops=hops
    )
    section = sqlite_markdown(run, targets(run), "sqlite notes")
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\npostgresql part\n\n" + SQLITE_HEADING + "\n\nold figures\n")
    write_document(out, None, section)
    document = out.read_text()
    assert "postgresql part" in document  # a SQLite-only run keeps the PostgreSQL part
    assert "old figures" not in document
    assert document.count(SQLITE_HEADING) == 1
    assert "aiosqlite thread hops/request GET /items/{id} <= baseline" in document
