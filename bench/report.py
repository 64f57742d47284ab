"""The targets (PASS/FAIL lines) and ``docs/benchmarks.md``, from one run's results."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from bench.cpu import CpuResults
from bench.endpoints import BY_KEY
from bench.load import LoadResults
from bench.roundtrips import WireCount
from bench.soak import Soak

HTTP_ENDPOINTS = ("noop", "item", "bump", "ready")
VARIANT_LABELS = {
    "project": "this project",
    "project_bot": "this project (bot app)",
    "baseline": "hand-written",
    "peer": "advanced-alchemy",
    "floor": "asyncpg",
    "aiohttp": "aiogram aiohttp",
}


@dataclass
class BenchRun:
    mode: str
    started: dt.datetime
    seconds: float = 0.0
    load_average: tuple[str, str] = ("", "")
    cpu: CpuResults | None = None
    load: LoadResults | None = None
    wire: dict[tuple[str, str], WireCount] | None = None
    soaks: list[Soak] = field(default_factory=list)
    backend: str = "postgresql"
    hops: dict[tuple[str, str], float] | None = None  # SQLite: aiosqlite thread hops/request


@dataclass(frozen=True)
class TargetResult:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this mode

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        return f"{verdict}  {self.name}: {self.measured}"


def targets(run: BenchRun) -> list[TargetResult]:
    if run.backend == "sqlite":
        return sqlite_targets(run)
    results = baseline_targets(run)
    load, wire = run.load, run.wire
    if load is not None and load.of("peer", "noop"):
        for key in HTTP_ENDPOINTS:
            ratio = load.paired_ratio("project", key, "peer", key)
            results.append(
                TargetResult(
                    f"requests/s {BY_KEY[key].label} >= advanced-alchemy",
                    f"{ratio:.3f}x",
                    ratio >= 1.0,
                )
            )
    if wire is not None and ("project", "noop") in wire:
        trips = wire[("project", "noop")].round_trips
        results.append(
            TargetResult("GET /noop costs 0 database round trips", f"{trips:g}", trips == 0)
        )
    if load is not None and load.of("aiohttp", "webhook"):
        ratio = load.paired_ratio("project_bot", "webhook", "aiohttp", "webhook")
        results.append(
            TargetResult(
                "webhook updates/s >= 1.0x aiogram's aiohttp handler", f"{ratio:.3f}x", ratio >= 1.0
            )
        )
    for soak in run.soaks:
        results.append(
            TargetResult(
                f"RSS growth over {soak.requests} requests < 5% ({VARIANT_LABELS[soak.variant]})",
                f"{soak.growth * 100:+.2f}%",
                soak.growth < 0.05,
            )
        )
    if not any(s.variant == "project" for s in run.soaks):
        results.append(
            TargetResult(
                "RSS growth over 100000 requests < 5%", "run `python -m bench --rss`", None
            )
        )
    if load is not None:
        for key, reference, threshold, name in (
            (
                "read_orm",
                "item",
                1.5,
                "read path: ORM reader.get requests/s >= 1.5x baseline GET /items/{id}",
            ),
            (
                "read_core",
                "item",
                2.2,
                "read path: Core (statement built once) requests/s >= 2.2x baseline GET /items/{id}",
            ),
            ("ready", "ready", 1.7, "read path: GET /health/ready requests/s >= 1.7x baseline"),
        ):
            ratio = load.paired_ratio("project", key, "baseline", reference)
            results.append(TargetResult(name, f"{ratio:.3f}x", ratio >= threshold))
    return results


def baseline_targets(run: BenchRun) -> list[TargetResult]:
    """``UowDep`` against the hand-written baseline, on either backend: CPU and requests/s."""
    results: list[TargetResult] = []
    cpu, load = run.cpu, run.load
    if cpu is not None:
        for key in HTTP_ENDPOINTS:
            ratio = cpu.paired_ratio("project", key, "baseline", key)
            results.append(
                TargetResult(
                    f"CPU/request {BY_KEY[key].label} <= 1.05x baseline",
                    f"{ratio:.3f}x",
                    ratio <= 1.05,
                )
            )
        extra = cpu.series[("project", "noop")].median - cpu.series[("baseline", "noop")].median
        results.append(
            TargetResult(
                "CPU/request GET /noop within +10 us of baseline", f"{extra:+.1f} us", extra <= 10
            )
        )
    if load is not None:
        for key in HTTP_ENDPOINTS:
            ratio = load.paired_ratio("project", key, "baseline", key)
            results.append(
                TargetResult(
                    f"requests/s {BY_KEY[key].label} >= 0.95x baseline",
                    f"{ratio:.3f}x",
                    ratio >= 0.95,
                )
            )
    return results


def sqlite_targets(run: BenchRun) -> list[TargetResult]:
    """The CPU and throughput lines of PostgreSQL, and thread hops in place of round trips."""
    results = baseline_targets(run)
    if run.hops is not None:
        for key in HTTP_ENDPOINTS:
            mine, theirs = run.hops[("project", key)], run.hops[("baseline", key)]
            results.append(
                TargetResult(
                    f"aiosqlite thread hops/request {BY_KEY[key].label} <= baseline",
                    f"{mine:g} vs {theirs:g}",
                    mine <= theirs,
                )
            )
    return results


def round_trips_saved(run: BenchRun) -> list[str]:
    if run.wire is None:
        return []
    wire = run.wire
    lines = []
    for key, reference in (("read_orm", "item"), ("read_core", "item"), ("ready", "ready")):
        if ("baseline", reference) not in wire or ("project", key) not in wire:
            continue
        saved = wire[("baseline", reference)].round_trips - wire[("project", key)].round_trips
        lines.append(
            f"round trips saved per request by the read path, {BY_KEY[key].label}: {saved:g} "
            f"({wire[('baseline', reference)].round_trips:g} -> {wire[('project', key)].round_trips:g})"
        )
    return lines


# -- markdown -------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_section(cpu: CpuResults) -> str:
    rows = []
    for key in ("noop", "item", "bump", "ready", "read_orm", "read_core", "webhook"):
        for variant in ("project", "project_bot", "baseline", "peer", "floor"):
            series = cpu.get(variant, key)
            if series is None:
                continue
            low, high = series.spread
            reference = "item" if key in ("read_orm", "read_core") else key
            ratio = (
                f"{cpu.paired_ratio(variant, key, 'baseline', reference):.2f}x"
                if cpu.get("baseline", reference) is not None
                else "-"
            )
            rows.append(
                [
                    BY_KEY[key].label,
                    VARIANT_LABELS[variant],
                    f"{series.median:.0f}",
                    f"{low:.0f}-{high:.0f}",
                    ratio,
                    str(series.errors),
                ]
            )
    return _table(
        [
            "endpoint",
            "variant",
            "CPU us/request (median)",
            "spread (p25-p75)",
            "vs hand-written",
            "errors",
        ],
        rows,
    )


def _load_section(load: LoadResults) -> str:
    rows = []
    for key in ("noop", "item", "bump", "ready", "read_orm", "read_core", "webhook"):
        for variant in ("project", "project_bot", "baseline", "peer", "floor", "aiohttp"):
            runs = load.of(variant, key)
            if not runs:
                continue
            if key == "webhook":
                reference, ref_key = "aiohttp", "webhook"
            else:
                reference, ref_key = "baseline", "item" if key in ("read_orm", "read_core") else key
            ratio = (
                f"{load.paired_ratio(variant, key, reference, ref_key):.2f}x"
                if load.of(reference, ref_key)
                else "-"
            )
            rows.append(
                [
                    BY_KEY[key].label,
                    VARIANT_LABELS[variant],
                    f"{load.rps(variant, key):.0f}",
                    " / ".join(f"{r.rps:.0f}" for r in runs),
                    ratio,
                    f"{sorted(r.p50_ms for r in runs)[len(runs) // 2]:.2f}",
                    f"{sorted(r.p99_ms for r in runs)[len(runs) // 2]:.2f}",
                    str(sum(r.errors for r in runs)),
                    f"{sorted(r.server_cpu_us for r in runs)[len(runs) // 2]:.0f}",
                ]
            )
    return _table(
        [
            "endpoint",
            "variant",
            "req/s (median)",
            "req/s per round",
            "ratio",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU us/req",
        ],
        rows,
    )


def _wire_section(wire: dict[tuple[str, str], WireCount]) -> str:
    rows = [
        [
            BY_KEY[key].label,
            VARIANT_LABELS[variant],
            f"{count.round_trips:g}",
            f"{count.statements:g}",
        ]
        for (variant, key), count in sorted(
            wire.items(), key=lambda kv: (list(BY_KEY).index(kv[0][1]), kv[0][0])
        )
    ]
    return _table(["endpoint", "variant", "round trips/request", "statements/request"], rows)


def markdown(run: BenchRun, results: list[TargetResult], notes: str) -> str:
    parts = [
        "# Benchmarks",
        "",
        f"Generated by `python -m bench{' --quick' if run.mode == 'quick' else ''}"
        f"{' --rss' if run.soaks else ''}` on {run.started:%Y-%m-%d %H:%M} UTC "
        f"in {run.seconds / 60:.1f} min. Machine: 2 cores shared with PostgreSQL and whatever else "
        f"ran (load average {run.load_average[0]} at start, {run.load_average[1]} at the end). "
        + ", ".join(
            f"{name} {version(name)}"
            for name in (
                "sqlalchemy",
                "asyncpg",
                "fastapi",
                "starlette",
                "uvicorn",
                "aiogram",
                "aiohttp",
                "advanced-alchemy",
            )
        )
        + ".",
        "",
        "Every figure is a ratio measured side by side in the same run; absolute numbers move "
        "with the machine's load. Re-run with `make bench` (full), `python -m bench --quick` "
        "(under 2 minutes) or `python -m bench --rss` (adds the 100 000-request memory soak).",
        "",
        "## Targets",
        "",
        "```",
        *[r.line() for r in results],
        *round_trips_saved(run),
        "```",
        "",
    ]
    if run.cpu is not None:
        parts += [
            "## CPU per request, in-process",
            "",
            f"The ASGI app called directly (no sockets), {run.cpu.rounds} interleaved rounds; the "
            "ratio is the median of per-round ratios to the hand-written baseline (for the "
            "read-path rows, to its `GET /items/{id}`). CPU of this process only (the database's "
            "own CPU is not counted).",
            "",
            _cpu_section(run.cpu),
            "",
        ]
    if run.load is not None:
        load = run.load
        parts += [
            "## Throughput under load",
            "",
            f"Each variant served by uvicorn (uvloop, httptools; aiohttp's own server for the "
            f"aiohttp handler) in a process pinned to core 0, `wrk -t1 -c{load.connections}` "
            f"pinned to core 1 ({'pinned with taskset' if load.pinned else 'NOT pinned: taskset or a second core missing'}), "
            f"{load.duration:g} s per run after a warm-up run, variants interleaved over "
            f"{load.rounds} round(s), the order reversed every other round; load generator: {load.generator}. Ratio: median of per-round "
            "ratios, to the hand-written baseline (read-path rows: to its `GET /items/{id}`; "
            "webhook: to aiogram's aiohttp handler). Server CPU: the server process's CPU time "
            "over the requests it served.",
            "",
            _load_section(load),
            "",
            "Peak RSS of each server process (VmHWM): "
            + ", ".join(
                f"{VARIANT_LABELS[v]} {kb / 1024:.0f} MiB" for v, kb in load.peak_rss_kb.items()
            )
            + ".",
            "",
        ]
    if run.wire is not None:
        parts += [
            "## Database round trips and statements per request",
            "",
            "Counted on the wire by a protocol-aware proxy between the app and PostgreSQL "
            "(`bench/wire.py`): a round trip is a simple Query or an extended-protocol Sync; "
            "a statement is a simple Query or an Execute (BEGIN and COMMIT included; the asyncpg "
            "pool's reset query on release is one simple Query). pg_stat_statements is installed "
            "but not preloaded on the shared server, and restarting it was not an option.",
            "",
            _wire_section(run.wire),
            "",
        ]
    if run.soaks:
        parts += [
            "## Memory soak",
            "",
            _table(
                [
                    "variant",
                    "requests",
                    "VmRSS after 10 000 warm-up requests",
                    "VmRSS after",
                    "growth",
                ],
                [
                    [
                        VARIANT_LABELS[s.variant],
                        str(s.requests),
                        f"{s.rss_after_warmup_kb / 1024:.1f} MiB",
                        f"{s.rss_after_kb / 1024:.1f} MiB",
                        f"{s.growth * 100:+.2f}%",
                    ]
                    for s in run.soaks
                ],
            ),
            "",
        ]
    parts += ["## Notes", "", notes.strip(), ""]
    return "\n".join(parts)


# -- the SQLite section ---------------------------------------------------------------------

SQLITE_HEADING = "## SQLite (a WAL file through aiosqlite)"


def _hops_section(hops: dict[tuple[str, str], float]) -> str:
    rows = [
        [BY_KEY[key].label, VARIANT_LABELS[variant], f"{count:g}"]
        for (variant, key), count in sorted(
            hops.items(), key=lambda kv: (list(BY_KEY).index(kv[0][1]), kv[0][0])
        )
    ]
    return _table(["endpoint", "variant", "aiosqlite thread hops/request"], rows)


def sqlite_markdown(run: BenchRun, results: list[TargetResult], notes: str) -> str:
    """The SQLite section of docs/benchmarks.md: it always comes last (see splice)."""
    parts = [
        SQLITE_HEADING,
        "",
        f"Generated by `python -m bench --backend sqlite{' --quick' if run.mode == 'quick' else ''}`"
        f" (or as part of `make bench`) on {run.started:%Y-%m-%d %H:%M} UTC in "
        f"{run.seconds / 60:.1f} min; load average {run.load_average[0]} at start, "
        f"{run.load_average[1]} at the end; SQLite {sqlite3.sqlite_version}, aiosqlite "
        f"{version('aiosqlite')}. The same apps, endpoints and table as above, on one SQLite "
        "file in WAL mode; the hand-written baseline uses aiosqlite's default setup.",
        "",
        "### Targets (SQLite)",
        "",
        "```",
        *[r.line() for r in results],
        "```",
        "",
    ]
    if run.cpu is not None:
        parts += [
            "### CPU per request, in-process (SQLite)",
            "",
            f"As on PostgreSQL: {run.cpu.rounds} interleaved rounds, the median of per-round "
            "ratios. CPU of this process, the aiosqlite worker threads included (SQLite runs "
            "in them).",
            "",
            _cpu_section(run.cpu),
            "",
        ]
    if run.load is not None:
        parts += [
            "### Throughput under load (SQLite)",
            "",
            f"As on PostgreSQL (uvicorn pinned to core 0, `wrk -t1 -c{run.load.connections}` "
            f"on core 1, {run.load.duration:g} s per run, {run.load.rounds} round(s), load "
            f"generator: {run.load.generator}).",
            "",
            _load_section(run.load),
            "",
        ]
    if run.hops is not None:
        parts += [
            "### aiosqlite thread hops per request",
            "",
            "Each driver call (`cursor()`, `execute`, `fetchall`, cursor `close`, `commit`, "
            "`rollback`) is one job for the connection's worker thread and one wake-up of the "
            "event loop; counted by wrapping each connection's job queue "
            "(`tests/support/thread_hops.py`).",
            "",
            _hops_section(run.hops),
            "",
        ]
    parts += ["### Notes (SQLite)", "", notes.strip(), ""]
    return "\n".join(parts)


def splice(document: str, sqlite_section: str) -> str:
    """``document`` with its SQLite section (everything from its heading on) replaced."""
    head, _, _ = document.partition(SQLITE_HEADING)
    return head.rstrip() + "\n\n" + sqlite_section


def write_document(out: Path, postgres: str | None, sqlite: str | None) -> None:
    """Write the parts that were measured; keep the other backend's part from ``out``."""
    existing = out.read_text() if out.exists() else ""
    if postgres is None:
        postgres = existing.partition(SQLITE_HEADING)[0].rstrip() or "# Benchmarks"
    if sqlite is None and SQLITE_HEADING in existing:
        sqlite = SQLITE_HEADING + existing.partition(SQLITE_HEADING)[2]
    document = splice(postgres, sqlite) if sqlite is not None else postgres
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document.rstrip() + "\n")
