"""Count what PostgreSQL is asked, on the wire: a small protocol-aware TCP proxy.

The apps of the counting pass connect to this proxy instead of the server. It forwards bytes
both ways untouched and parses only the client's side of the protocol: each simple ``Query``
('Q') and each ``Sync`` ('S') ends one request/response cycle (a **round trip**: the client
then waits for ReadyForQuery); each ``Execute`` ('E') or ``Query`` is a **statement**
(BEGIN and COMMIT included). The startup phase (SSLRequest, StartupMessage, authentication)
is not counted. pg_stat_statements would need ``shared_preload_libraries`` and a restart of
the shared server, so the count is taken here instead.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter

_SPECIAL_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest: another startup follows


class WireCounter:
    def __init__(self, server_host: str, server_port: int) -> None:
        self.server_host = server_host
        self.server_port = server_port
        self.messages: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self) -> None:
        self.messages.clear()

    @property
    def round_trips(self) -> int:
        return self.messages["Q"] + self.messages["S"]

    @property
    def statements(self) -> int:
        return self.messages["Q"] + self.messages["E"]

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            self.server_host, self.server_port
        )
        upstream = asyncio.ensure_future(self._client_to_server(client_reader, server_writer))
        downstream = asyncio.ensure_future(self._pipe(server_reader, client_writer))
        for task in (upstream, downstream):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        for task in (upstream, downstream):
            task.cancel()
        for writer in (client_writer, server_writer):
            writer.close()

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            # Startup: untyped packets (length, code, body) until a StartupMessage.
            while True:
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                writer.write(head + await reader.readexactly(length - 8))
                await writer.drain()
                if code not in _SPECIAL_CODES:
                    break
            while True:
                head = await reader.readexactly(5)
                kind = chr(head[0])
                (length,) = struct.unpack("!i", head[1:])
                body = await reader.readexactly(length - 4)
                self.messages[kind] += 1
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
