"""Graceful drain of a process: readiness off first, in-flight work finishes, then stop.

::

    drain = Drain()
    drain.install_signal_handlers(timeout=20.0)   # SIGTERM/SIGINT: drain, then the server stops

    with drain.track():        # around each unit of in-flight work (a webhook request)
        ...
    if drain.started:          # readiness and the webhook answer 503 from now on
        ...

On the first SIGTERM (or SIGINT) the process does not stop at once: :attr:`Drain.started`
turns true (``/health/ready`` answers 503, so a load balancer stops sending; the webhook
answers new updates 503 with ``Retry-After``, so Telegram redelivers them elsewhere or
later), the work in flight gets up to ``timeout`` seconds to finish, and only then does the
previous handler (uvicorn's) run and shut the server down. A second signal stops at once.
Core module: no framework import.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import structlog

__all__ = ["Drain"]

log = structlog.get_logger("db_manager.drain")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_Handler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    """The drain state of one process, with a count of the work in flight."""

    def __init__(self) -> None:
        self.started = False
        self.started_at: float | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._previous: dict[int, _Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], Any]] = []
        self._timeout = 20.0

    @property
    def inflight(self) -> int:
        return self._inflight

    def on_start(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the drain starts (e.g. to stop claiming queue work)."""
        self._callbacks.append(callback)

    def begin(self) -> None:
        """Start draining (idempotent)."""
        if self.started:
            return
        self.started = True
        self.started_at = time.monotonic()
        log.info("drain started: readiness is off, new webhook updates are answered 503")
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("drain callback failed")

    def remaining(self, timeout: float) -> float:
        """Seconds left of a drain deadline of ``timeout`` counted from :meth:`begin`."""
        if self.started_at is None:
            return timeout
        return max(0.0, timeout - (time.monotonic() - self.started_at))

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count the work inside the ``with`` as in flight."""
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def wait_idle(self, within: float) -> bool:
        """Wait until nothing is in flight; False if ``within`` seconds passed first."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def install_signal_handlers(self, *, timeout: float) -> bool:
        """Drain on SIGTERM/SIGINT before the handlers found here (uvicorn's) run.

        Only in the main thread of a running event loop (signals are delivered there);
        returns whether the handlers were installed. :meth:`restore_signal_handlers` puts
        the previous ones back.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._timeout = timeout
        for signum in _SIGNALS:
            self._previous[signum] = signal.getsignal(signum)

            def handler(signum: int, frame: FrameType | None) -> None:
                loop.call_soon_threadsafe(self._on_signal, signum, frame)

            signal.signal(signum, handler)
        return True

    def restore_signal_handlers(self) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._task is not None:  # a second signal: stop now
            self._hand_over(signum, frame)
            return
        self.begin()
        self._task = asyncio.get_running_loop().create_task(self._drain_then_stop(signum, frame))

    async def _drain_then_stop(self, signum: int, frame: FrameType | None) -> None:
        timeout = self._timeout
        if not await self.wait_idle(timeout):
            log.warning(
                "drain deadline passed with work in flight",
                inflight=self._inflight,
                timeout=timeout,
            )
        self._hand_over(signum, frame)

    def _hand_over(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        self.restore_signal_handlers()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.raise_signal(signum)
