"""``python -m bench``: both measurements, the targets as PASS/FAIL lines, docs/benchmarks.md.

Options: ``--quick`` (under 2 minutes: fewer rounds, shorter runs), ``--rss`` (adds the
100 000-request memory soak), ``--no-load`` / ``--no-cpu`` (skip a measurement),
``--backend all|postgresql|sqlite`` (default all: PostgreSQL, then SQLite),
``--out PATH`` (default ``docs/benchmarks.md``). The run creates its own PostgreSQL database
(``BENCH_PG_HOST``/``_PORT``/``_USER``/``_DATABASE``, defaults 127.0.0.1:5432 postgres/test
for the admin connection) and drops it at the end; the SQLite mode, a WAL file in a
temporary directory. A run of one backend rewrites only that backend's part of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import structlog
import uvloop

from bench.apps import SQLITE_VARIANTS
from bench.common import Target, bench_database, bench_sqlite_database
from bench.cpu import CPU_VARIANTS, measure_cpu
from bench.hops import count_thread_hops
from bench.load import measure_load
from bench.report import (
    BenchRun,
    markdown,
    round_trips_saved,
    sqlite_markdown,
    targets,
    write_document,
)
from bench.roundtrips import count_round_trips
from bench.soak import soak

ROOT = Path(__file__).resolve().parent.parent
# Compared pairs sit next to each other: project / baseline / peer, project_bot / aiohttp.
LOAD_VARIANTS = ("project", "baseline", "peer", "floor", "project_bot", "aiohttp")
QUICK: dict[str, Any] = {
    "cpu_rounds": 3,
    "cpu_batch": {
        "noop": 300,
        "item": 60,
        "bump": 60,
        "ready": 60,
        "read_orm": 60,
        "read_core": 60,
        "webhook": 40,
    },
    "load_rounds": 1,
    "load_seconds": 2.0,
    "wire_n": 20,
}
FULL: dict[str, Any] = {
    "cpu_rounds": 9,
    "cpu_batch": {
        "noop": 1000,
        "item": 200,
        "bump": 200,
        "ready": 200,
        "read_orm": 200,
        "read_core": 200,
        "webhook": 150,
    },
    "load_rounds": 5,
    "load_seconds": 4.0,
    "wire_n": 100,
}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


async def run_all(args: argparse.Namespace) -> BenchRun:
    plan = QUICK if args.quick else FULL
    run = BenchRun(mode="quick" if args.quick else "full", started=dt.datetime.now(dt.UTC))
    run.load_average = (load_average(), "")
    began = time.monotonic()
    async with bench_database(Target(pool_size=args.pool_size)) as target:
        print(f"database {target.database} created with 1000 items", flush=True)
        if not args.no_cpu:
            print("measurement 1: CPU per request, in-process", flush=True)
            run.cpu = await measure_cpu(
                target,
                rounds=int(plan["cpu_rounds"]),
                batch=dict(plan["cpu_batch"]),
                variants=CPU_VARIANTS,
            )
        print("counting database round trips per request", flush=True)
        run.wire = await count_round_trips(target, variants=LOAD_VARIANTS, n=int(plan["wire_n"]))
        if not args.no_load:
            print("measurement 2: throughput under load (wrk)", flush=True)
            run.load = await asyncio.to_thread(
                measure_load,
                target,
                rounds=int(plan["load_rounds"]),
                duration=float(plan["load_seconds"]),
                warmup=1.0,
                connections=args.connections,
                variants=LOAD_VARIANTS,
            )
        if args.rss:
            print("memory soak: 100 000 requests per variant", flush=True)
            for variant in ("project", "project_bot", "baseline"):
                run.soaks.append(
                    await asyncio.to_thread(soak, target, variant, connections=args.connections)
                )
    run.seconds = time.monotonic() - began
    run.load_average = (run.load_average[0], load_average())
    return run


async def run_sqlite(args: argparse.Namespace) -> BenchRun:
    plan = QUICK if args.quick else FULL
    run = BenchRun(
        mode="quick" if args.quick else "full", started=dt.datetime.now(dt.UTC), backend="sqlite"
    )
    run.load_average = (load_average(), "")
    began = time.monotonic()
    async with bench_sqlite_database(Target(pool_size=args.pool_size)) as target:
        print(f"SQLite file {target.sqlite_path} created with 1000 items", flush=True)
        if not args.no_cpu:
            print("SQLite measurement 1: CPU per request, in-process", flush=True)
            run.cpu = await measure_cpu(
                target,
                rounds=int(plan["cpu_rounds"]),
                batch=dict(plan["cpu_batch"]),
                variants=SQLITE_VARIANTS,
            )
        print("SQLite: counting aiosqlite thread hops per request", flush=True)
        run.hops = await count_thread_hops(target, variants=SQLITE_VARIANTS, n=int(plan["wire_n"]))
        if not args.no_load:
            print("SQLite measurement 2: throughput under load", flush=True)
            run.load = await asyncio.to_thread(
                measure_load,
                target,
                rounds=int(plan["load_rounds"]),
                duration=float(plan["load_seconds"]),
                warmup=1.0,
                connections=args.connections,
                variants=SQLITE_VARIANTS,
            )
    run.seconds = time.monotonic() - began
    run.load_average = (run.load_average[0], load_average())
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under 2 minutes)")
    parser.add_argument("--rss", action="store_true", help="add the 100 000-request memory soak")
    parser.add_argument("--no-load", action="store_true", help="skip the throughput measurement")
    parser.add_argument("--no-cpu", action="store_true", help="skip the in-process CPU measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--pool-size", type=int, default=10, help="pool size of every variant")
    parser.add_argument(
        "--backend", choices=("all", "postgresql", "sqlite"), default="all", help="default all"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if not (args.no_load and not args.rss) and shutil.which("wrk") is None:
        print(
            "wrk is not installed (Debian: apt-get install -y wrk); falling back to the "
            "python load generator bench/loadgen.py, which saturates sooner",
            file=sys.stderr,
        )
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    postgres = sqlite = None
    if args.backend in ("all", "postgresql"):
        run = uvloop.run(run_all(args))
        results = targets(run)
        print()
        for result in results:
            print(result.line())
        for line in round_trips_saved(run):
            print(line)
        postgres = markdown(run, results, Path(__file__).with_name("NOTES.md").read_text())
    if args.backend in ("all", "sqlite"):
        sqlite_run = uvloop.run(run_sqlite(args))
        sqlite_results = targets(sqlite_run)
        print()
        for result in sqlite_results:
            print(f"[sqlite] {result.line()}")
        notes = Path(__file__).with_name("NOTES_SQLITE.md").read_text()
        sqlite = sqlite_markdown(sqlite_run, sqlite_results, notes)
    write_document(args.out, postgres, sqlite)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
