"""Run an ASGI app's lifespan the way a server does, for tests that post through httpx.

``httpx.ASGITransport`` sends requests only; :func:`running` drives the ``lifespan``
protocol around them (startup before, shutdown after), so the app's own lifespan and
middleware are exercised exactly as under uvicorn::

    async with running(app) as client:
        response = await client.post("/webhook/telegram", ...)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

__all__ = ["LifespanFailed", "lifespan", "running"]


class LifespanFailed(RuntimeError):
    """The app reported ``lifespan.startup.failed`` or ``lifespan.shutdown.failed``."""


@asynccontextmanager
async def lifespan(app: ASGIApp, *, timeout: float = 15.0) -> AsyncIterator[None]:
    """Start the app (raise :class:`LifespanFailed` with the app's message if it fails)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def serve() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(serve())

    async def expect(kind: str) -> None:
        getter = asyncio.ensure_future(outbox.get())
        done, _ = await asyncio.wait({getter, task}, timeout=timeout, return_when="FIRST_COMPLETED")
        if getter not in done:
            getter.cancel()
            if task in done:
                task.result()  # re-raise what the app raised
                raise LifespanFailed(f"the app returned before {kind}")
            raise LifespanFailed(f"no {kind} within {timeout}s")
        message = getter.result()
        if message["type"] == f"{kind}.failed":
            await asyncio.gather(task, return_exceptions=True)
            raise LifespanFailed(message.get("message", ""))
        if message["type"] != f"{kind}.complete":
            raise LifespanFailed(f"unexpected {message['type']}")

    await inbox.put({"type": "lifespan.startup"})
    try:
        await expect("lifespan.startup")
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        try:
            await expect("lifespan.shutdown")
        finally:
            await asyncio.wait_for(task, timeout)


@asynccontextmanager
async def running(
    app: ASGIApp, *, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
