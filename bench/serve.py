"""Serve one variant for the throughput measurement: ``python -m bench.serve VARIANT PORT TARGET``.

ASGI variants run under uvicorn (uvloop, httptools, no access log); the aiohttp variant
under aiohttp's own server, on uvloop too. The benchmark pins this process to one core.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog
import uvloop


def track_gc() -> None:
    """With BENCH_GC_STATS set, print the time spent in each GC generation at exit."""
    import atexit
    import gc
    import time

    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            runs[info["generation"]] += 1

    gc.callbacks.append(callback)
    atexit.register(
        lambda: print(f"gc runs {runs} seconds {[round(x, 3) for x in spent]}", file=sys.stderr)
    )


def main(argv: list[str]) -> None:
    variant, port, target_json = argv[0], int(argv[1]), argv[2]
    if os.environ.get("BENCH_GC_STATS"):
        track_gc()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)

    from bench.apps import build
    from bench.common import Target

    app = build(variant, Target.from_json(target_json))
    if os.environ.get("BENCH_GC_FREEZE"):
        import gc

        gc.freeze()
    if variant == "aiohttp":
        from aiohttp import web

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
        return
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
