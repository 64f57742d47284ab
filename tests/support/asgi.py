"""Run an ASGI app's lifespan the way a server does, for tests that post through httpx.

``httpx.ASGITransport`` sends requests only; :func:`running` drives the ``lifespan``
protocol around them (startup before, shutdown after), so the app's own lifespan and
middleware are exercised exactly as under uvicorn::

    async with running(app) as client:
        response = await client.post("/webhook/telegram", ...)

:class:`ResponseStartProbe` looks at the world at the moment a response starts, to prove
that what the client is about to hear (a 2xx) was already true (the row committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LifespanFailed", "ResponseStartProbe", "lifespan", "running"]


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


class ResponseStartProbe:
    """ASGI wrapper: when the app starts an HTTP response, await ``probe(scope)`` before the
    start message goes on to the server, and keep what it returns in :attr:`seen`.

    It runs at the moment the status line leaves the app, so what ``probe`` observes was true
    before the client could hear anything.
    """

    def __init__(self, app: ASGIApp, probe: Callable[[Scope], Awaitable[Any]]) -> None:
        self.app = app
        self.probe = probe
        self.seen: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_probed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(await self.probe(scope))
            await send(message)

        await self.app(scope, receive, send_probed)
