"""The RSS soak (``python -m bench --rss``): memory growth over 100 000 requests.

Each soaked variant's server gets a mixed load (every endpoint it serves, in turn) from wrk:
first a warm-up of 10 000 requests, then at least 100 000 more; the growth is the server's
resident set (``VmRSS``) after the soak over the one after the warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import WEBHOOK_SECRET, Target
from bench.endpoints import SERVES
from bench.load import Server, UpdateIds, run_wrk_args

WARMUP_REQUESTS = 10_000
SOAK_REQUESTS = 100_000


@dataclass(frozen=True)
class Soak:
    variant: str
    requests: int
    rss_after_warmup_kb: int
    rss_after_kb: int

    @property
    def growth(self) -> float:
        return self.rss_after_kb / self.rss_after_warmup_kb - 1


def mix_args(variant: str, update_base: int) -> list[str]:
    parts = []
    for endpoint in SERVES[variant]:
        mode, path = endpoint.wrk_args(update_base)[:2]
        parts.append(f"{mode}:{path}")
    return ["mix", ",".join(parts), str(update_base), WEBHOOK_SECRET]


def soak(target: Target, variant: str, *, connections: int, log: bool = True) -> Soak:
    ids = UpdateIds()
    server = Server(variant, target)
    try:
        done = 0
        while done < WARMUP_REQUESTS:
            done += int(
                run_wrk_args(server.port, mix_args(variant, ids.take()), 5, connections)["requests"]
            )
        before = server.memory_kb("VmRSS")
        done = 0
        while done < SOAK_REQUESTS:
            done += int(
                run_wrk_args(server.port, mix_args(variant, ids.take()), 10, connections)[
                    "requests"
                ]
            )
            if log:
                print(
                    f"  soak {variant}: {done} requests, VmRSS {server.memory_kb('VmRSS')} kB",
                    flush=True,
                )
        after = server.memory_kb("VmRSS")
        return Soak(variant, done, before, after)
    finally:
        server.stop()
