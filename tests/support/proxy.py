"""A TCP proxy a test can switch between modes: the database "goes away" without touching it.

::

    async with TcpProxy("127.0.0.1", 5432) as proxy:   # forwarding, on proxy.port
        settings = pg_settings(name, port=proxy.port)
        ...
        await proxy.refuse()     # stop listening (connections refused), cut every open one
        await proxy.blackhole()  # cut every open one; accept new ones and never answer
        await proxy.freeze()     # keep every connection open, deliver nothing until forward()
        await proxy.forward()    # forward again, on the same port

The port is chosen when the proxy first listens and kept for its life, so an engine built
with it reconnects to the same address once the proxy forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Literal

__all__ = ["TcpProxy"]

Mode = Literal["forward", "blackhole", "refuse", "freeze"]


class TcpProxy:
    """Forwards ``host:port`` to ``target_host:target_port`` while in ``forward`` mode."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.mode: Mode = "refuse"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()  # cleared while frozen: the pumps hold their bytes
        self._flowing.set()

    async def forward(self) -> None:
        """Listen and forward new connections (open ones are left alone; frozen ones get
        what they were sent meanwhile)."""
        self.mode = "forward"
        self._flowing.set()
        await self._listen()

    async def freeze(self) -> None:
        """A server that hangs with its connections open: every connection, open or new,
        stays up and nothing is delivered either way (held until :meth:`forward`). Only the
        client's own timeouts end its wait."""
        self.mode = "freeze"
        self._flowing.clear()
        await self._listen()

    async def blackhole(self) -> None:
        """Cut every open connection; accept new ones and never say a word (a server that
        hangs: only the client's timeout ends its wait)."""
        self._cut_all()
        self.mode = "blackhole"
        self._flowing.set()
        await self._listen()

    async def refuse(self) -> None:
        """Stop listening (new connections are refused) and cut every open one."""
        self.mode = "refuse"
        self._flowing.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._cut_all()
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        """Refuse, and wait until every connection handler has finished."""
        await self.refuse()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> TcpProxy:
        await self.forward()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, reuse_address=True
            )
            self.port = int(self._server.sockets[0].getsockname()[1])

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            if self.mode == "blackhole":
                await reader.read()  # silent until the client gives up or the test cuts it
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            pumps = [
                asyncio.create_task(_pump(reader, up_writer, self._flowing)),
                asyncio.create_task(_pump(up_reader, writer, self._flowing)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass  # the target refused, or the test cut this connection: either way it ends
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
