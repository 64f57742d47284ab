"""Wake queue workers without a polling delay: PostgreSQL LISTEN/NOTIFY and in-process rings.

::

    notifications = Notifications(engine)
    inbox_wakeup = notifications.subscribe("db_manager_inbox")
    await notifications.start()          # one connection LISTENs on every subscribed channel
    ...
    seen = inbox_wakeup.generation
    if not await claim_one():
        await inbox_wakeup.wait(seen, within=1.0)   # a NOTIFY, a local ring or the poll
    ...
    await notifications.stop()

A producer in the same process rings the :class:`Wakeup` itself after its commit; one in
another process sends ``NOTIFY channel`` in its transaction (PostgreSQL delivers it at
COMMIT) and the listening connection rings it here. The listener reconnects by itself when
its connection is lost and rings every wakeup when it is back (a notification may have been
missed meanwhile). On SQLite there is no listener: rings stay in-process and workers fall
back on their poll. Core module: SQLAlchemy only (asyncpg when the engine uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db_manager.errors import summarize

__all__ = ["Notifications", "Wakeup"]

log = structlog.get_logger("db_manager.notify")


class Wakeup:
    """A generation counter workers wait on: :meth:`ring` wakes every waiter.

    Read :attr:`generation` before looking for work and pass it to :meth:`wait`: a ring
    that arrived in between makes ``wait`` return at once, so no wake-up is lost.
    """

    __slots__ = ("_event", "_generation")

    def __init__(self) -> None:
        self._generation = 0
        self._event = asyncio.Event()

    @property
    def generation(self) -> int:
        return self._generation

    def ring(self) -> None:
        self._generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seen: int, within: float | None) -> bool:
        """Wait for a ring after generation ``seen``; False when ``within`` seconds passed first."""
        if self._generation != seen:
            return True
        event = self._event
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            return False
        return True


class Notifications:
    """One LISTENing connection per process for every subscribed channel (PostgreSQL).

    The connection is taken from ``engine``'s pool for the listener's lifetime and is
    closed (not returned) at :meth:`stop`: count one more connection per process in the
    connection budget when a queue worker runs.
    """

    def __init__(
        self, engine: AsyncEngine, *, reconnect_delay: float = 1.0, check_interval: float = 5.0
    ) -> None:
        self.engine = engine
        self.reconnect_delay = reconnect_delay
        self.check_interval = check_interval
        self._wakeups: dict[str, Wakeup] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def supported(self) -> bool:
        return self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "asyncpg"

    def subscribe(self, channel: str) -> Wakeup:
        """The wakeup rung by ``NOTIFY channel`` (one per channel, shared by subscribers)."""
        wakeup = self._wakeups.get(channel)
        if wakeup is None:
            wakeup = self._wakeups[channel] = Wakeup()
        return wakeup

    def ring(self, channel: str) -> None:
        """Ring ``channel``'s wakeup in this process (after a local commit)."""
        wakeup = self._wakeups.get(channel)
        if wakeup is not None:
            wakeup.ring()

    async def start(self, *, wait: float = 5.0) -> None:
        """Start listening; wait up to ``wait`` seconds for the first LISTEN (never fails:
        without a listener the workers still poll)."""
        if self._task is not None or not self.supported or not self._wakeups:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen_forever())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._listening.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "notification listener lost its connection; reconnecting",
                    error_type=type(exc).__name__,
                    error=summarize(exc),
                )
            self._listening.clear()
            await asyncio.sleep(self.reconnect_delay)

    async def _listen_once(self) -> None:
        connection: AsyncConnection = await self.engine.connect()
        try:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            lost = asyncio.Event()
            driver.add_termination_listener(lambda _connection: lost.set())
            for channel, wakeup in self._wakeups.items():
                await driver.add_listener(channel, _ringer(wakeup))
            self._listening.set()
            for wakeup in self._wakeups.values():
                wakeup.ring()  # whatever was notified while nobody listened
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.check_interval):
                        await lost.wait()
                if not lost.is_set():
                    # A server that vanished without closing the socket: ask, bounded.
                    async with asyncio.timeout(self.check_interval):
                        await driver.fetchval("SELECT 1")
            raise ConnectionError("the listening connection was closed")
        finally:
            # Never back into the pool: the connection still LISTENs.
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.invalidate())
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close())


def _ringer(wakeup: Wakeup) -> Any:
    def ring(_connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        wakeup.ring()

    return ring
