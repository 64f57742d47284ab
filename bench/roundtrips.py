"""The counting pass: database round trips and statements per request, per endpoint.

Every app is built against :class:`~bench.wire.WireCounter` (a proxy in front of the
server) and called in-process (the aiohttp app through a mocked request: fine for counting,
never used for timing). After a warm-up (connections, prepared statements), the counter is
reset and ``n`` requests are sent; the counts divided by ``n`` are exact averages.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.apps import build
from bench.common import Target
from bench.endpoints import SERVES
from bench.inprocess import AiohttpClient, AsgiClient
from bench.wire import WireCounter


@dataclass(frozen=True)
class WireCount:
    round_trips: float
    statements: float


async def count_round_trips(
    target: Target, *, variants: tuple[str, ...], n: int = 100
) -> dict[tuple[str, str], WireCount]:
    counter = WireCounter(target.host, target.port)
    port = await counter.start()
    proxied = target.with_port(port)
    counts: dict[tuple[str, str], WireCount] = {}
    update_base = 30_000_000_000
    try:
        for variant in variants:
            app = build(variant, proxied)
            client = AiohttpClient(app) if variant == "aiohttp" else AsgiClient(app)
            await client.start()
            try:
                for endpoint in SERVES[variant]:
                    for i in range(20):  # warm-up
                        path, body, headers = endpoint.request(i, update_base)
                        await client.request(endpoint.method, path, body, headers)
                    update_base += 1000
                    counter.reset()
                    for i in range(n):
                        path, body, headers = endpoint.request(i, update_base)
                        status = await client.request(endpoint.method, path, body, headers)
                        if status >= 300:
                            raise RuntimeError(f"{variant} {endpoint.label} answered {status}")
                    update_base += 1000
                    counts[(variant, endpoint.key)] = WireCount(
                        counter.round_trips / n, counter.statements / n
                    )
            finally:
                await client.stop()
    finally:
        await counter.stop()
    return counts
