"""Count aiosqlite's thread hops: each job a connection hands to its worker thread.

aiosqlite runs every call (``cursor()``, ``execute``, ``fetchall``, ``close``, ``commit``,
``rollback``, an ``isolation_level`` change) as one job on the connection's own thread and
wakes the event loop with the result: one hop there and back, the unit of its overhead. The
counter wraps the queue of every connection opened while it is installed, so it sees all
jobs, also those SQLAlchemy's adapter puts on the queue directly. Test and benchmark
instrumentation only: nothing in db_manager is patched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiosqlite

__all__ = ["ThreadHops"]


class _CountingQueue:
    """Stands in for ``Connection._tx`` on the event loop's side; the worker keeps the real one."""

    __slots__ = ("_counter", "_queue")

    def __init__(self, queue: Any, counter: ThreadHops) -> None:
        self._queue = queue
        self._counter = counter

    def put_nowait(self, item: Any) -> None:
        self._counter.hops += 1
        self._queue.put_nowait(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class ThreadHops:
    """``with hops.installed(): ...`` counts the hops of connections opened inside it."""

    def __init__(self) -> None:
        self.hops = 0

    def reset(self) -> None:
        self.hops = 0

    @contextmanager
    def installed(self) -> Iterator[ThreadHops]:
        original = aiosqlite.Connection.__init__
        counter = self

        def init(connection: aiosqlite.Connection, *args: Any, **kwargs: Any) -> None:
            original(connection, *args, **kwargs)
            connection._tx = _CountingQueue(connection._tx, counter)  # type: ignore[assignment]

        aiosqlite.Connection.__init__ = init  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            aiosqlite.Connection.__init__ = original  # type: ignore[method-assign]
