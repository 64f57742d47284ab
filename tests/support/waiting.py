"""Waiting for an observable state instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["wait_for"]


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.05
) -> bool:
    """Poll ``condition`` every ``interval`` seconds until it is true (True) or ``timeout``
    seconds have passed (False; the caller asserts, with what it saw as the message)."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
