"""Measurement 1: CPU time per request, in-process (the ASGI app called directly).

Every variant's app runs in this one process and event loop. A batch is ``n`` sequential
requests to one endpoint of one variant, timed with ``time.process_time_ns`` (this process
only: PostgreSQL's own CPU is not counted). Batches are interleaved variant by variant for
each endpoint, round after round, so slow phases of a noisy machine hit every variant alike;
the ratio to the baseline is taken per round (paired) and its median reported.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field

from bench.apps import build
from bench.common import Target
from bench.endpoints import SERVES, Endpoint
from bench.inprocess import AsgiClient

CPU_VARIANTS = ("project", "project_bot", "baseline", "peer", "floor")


@dataclass
class CpuSeries:
    """Microseconds of CPU per request, one value per round."""

    samples: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        """The interquartile range (p25, p75), or (min, max) with fewer than 4 rounds."""
        if len(self.samples) < 4:
            return min(self.samples), max(self.samples)
        q = statistics.quantiles(self.samples, n=4)
        return q[0], q[2]


@dataclass
class CpuResults:
    rounds: int
    series: dict[tuple[str, str], CpuSeries] = field(default_factory=dict)

    def get(self, variant: str, endpoint: str) -> CpuSeries | None:
        return self.series.get((variant, endpoint))

    def paired_ratio(self, variant: str, endpoint: str, reference: str, ref_endpoint: str) -> float:
        mine, ref = self.series[(variant, endpoint)], self.series[(reference, ref_endpoint)]
        return statistics.median(a / b for a, b in zip(mine.samples, ref.samples, strict=True))


async def run_batch(
    client: AsgiClient, endpoint: Endpoint, n: int, start: int, base: int
) -> tuple[float, int]:
    """CPU microseconds per request over ``n`` requests, and the number of non-2xx answers."""
    requests = [endpoint.request(i, base) for i in range(start, start + n)]
    method = endpoint.method
    errors = 0
    gc.collect()
    began = time.process_time_ns()
    for path, body, headers in requests:
        status = await client.request(method, path, body, headers)
        if status >= 300:
            errors += 1
    spent = time.process_time_ns() - began
    return spent / n / 1000, errors


async def measure_cpu(
    target: Target,
    *,
    rounds: int,
    batch: dict[str, int],
    variants: tuple[str, ...] = CPU_VARIANTS,
    log: bool = True,
) -> CpuResults:
    """``batch`` maps an endpoint key to the requests per batch."""
    clients = {variant: AsgiClient(build(variant, target)) for variant in variants}
    for client in clients.values():
        await client.start()
    results = CpuResults(rounds=rounds)
    counter = 0
    update_base = 10_000_000_000
    try:
        # Warm-up: connections, prepared statements, SQLAlchemy's compiled cache, imports.
        for variant, client in clients.items():
            for endpoint in SERVES[variant]:
                await run_batch(client, endpoint, 30, counter, update_base)
                counter += 30
        for round_no in range(rounds):
            order = variants[round_no % len(variants) :] + variants[: round_no % len(variants)]
            for endpoint_key, n in batch.items():
                for variant in order:
                    served = next((e for e in SERVES[variant] if e.key == endpoint_key), None)
                    if served is None:
                        continue
                    micros, errors = await run_batch(
                        clients[variant], served, n, counter, update_base
                    )
                    counter += n
                    series = results.series.setdefault((variant, endpoint_key), CpuSeries())
                    series.samples.append(micros)
                    series.errors += errors
            if log:
                print(f"  cpu round {round_no + 1}/{rounds} done", flush=True)
    finally:
        for client in clients.values():
            await client.stop()
    return results
