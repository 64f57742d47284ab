"""Cleanup that a cancellation cannot abandon: the shield the UnitOfWork and Reader share."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_to_completion"]

_T = TypeVar("_T")


async def run_to_completion(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run cleanup in a task of its own and wait for it even if we are cancelled meanwhile.

    The same technique SQLAlchemy uses for ``AsyncSession.__aexit__`` (its helper is private,
    so it is restated here). Repeated cancellation (anyio's level-triggered cancel scopes) is
    absorbed until the cleanup is done, then the first cancellation is re-raised.
    """
    task = asyncio.ensure_future(coro)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as err:
            if task.done():
                raise
            cancelled = err
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result
