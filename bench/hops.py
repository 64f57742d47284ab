"""The SQLite counting pass: aiosqlite thread hops per request, per endpoint.

SQLite has no wire to count; what each statement costs the app is its hops through
aiosqlite's worker thread (a job queued, the thread woken, the event loop woken with the
result). Every app is built and started with :class:`~tests.support.thread_hops.ThreadHops`
installed, called in-process; after a warm-up the counter is reset and ``n`` requests are
sent, so the counts divided by ``n`` are exact averages.
"""

from __future__ import annotations

from bench.apps import build
from bench.common import Target
from bench.endpoints import SERVES
from bench.inprocess import AsgiClient
from tests.support.thread_hops import ThreadHops


async def count_thread_hops(
    target: Target, *, variants: tuple[str, ...], n: int = 100
) -> dict[tuple[str, str], float]:
    counter = ThreadHops()
    counts: dict[tuple[str, str], float] = {}
    with counter.installed():
        for variant in variants:
            client = AsgiClient(build(variant, target))
            await client.start()
            try:
                for endpoint in SERVES[variant]:
                    for i in range(20):  # warm-up: every pooled connection opened and tuned
                        path, body, headers = endpoint.request(i)
                        await client.request(endpoint.method, path, body, headers)
                    counter.reset()
                    for i in range(n):
                        path, body, headers = endpoint.request(i)
                        status = await client.request(endpoint.method, path, body, headers)
                        if status >= 300:
                            raise RuntimeError(f"{variant} {endpoint.label} answered {status}")
                    counts[(variant, endpoint.key)] = counter.hops / n
            finally:
                await client.stop()
    return counts
