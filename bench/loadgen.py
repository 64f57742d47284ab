"""The fallback load generator, for machines without wrk: ``python -m bench.loadgen``.

One uvloop process (pinned to the client core like wrk) with ``--connections`` keep-alive
HTTP/1.1 connections, each sending its next request as soon as the previous answer is read;
the same request modes and the same JSON summary as ``bench/wrk.lua``. It needs much more
CPU per request than wrk, so it saturates sooner: figures from it are labelled as such.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable

import uvloop

BODY = (
    '{{"update_id":{},"message":{{"message_id":{},"date":1764000000,'
    '"chat":{{"id":4242,"type":"private","first_name":"Bench"}},'
    '"from":{{"id":4242,"is_bot":false,"first_name":"Bench"}},'
    '"text":"hello from the benchmark"}}}}'
)


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (head and ``Content-Length`` body); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


def request_maker(args: list[str]) -> Callable[[int], bytes]:
    mode, path = args[0], args[1]
    base = int(args[2]) if len(args) > 2 else 0
    secret = args[3] if len(args) > 3 else ""
    entries = (
        [tuple(part.split(":", 1)) for part in path.split(",")] if mode == "mix" else [(mode, path)]
    )

    def make(n: int) -> bytes:
        kind, target = entries[n % len(entries)]
        if kind == "static":
            return f"GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        if kind in ("get", "post"):
            method = "GET" if kind == "get" else "POST"
            url = target.replace("%d", str(n % 1000 + 1))
            return f"{method} {url} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n".encode()
        body = BODY.format(base + n, n % 1_000_000 + 1).encode()
        head = (
            f"POST {target} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"X-Telegram-Bot-Api-Secret-Token: {secret}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return make


async def run(port: int, connections: int, seconds: float, args: list[str]) -> dict[str, float]:
    make = request_maker(args)
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    counter = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal counter
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors["connect"] += 1
            return
        try:
            while time.perf_counter() < deadline:
                counter += 1
                began = time.perf_counter()
                writer.write(make(counter))
                status = await read_response(reader)
                latencies.append(time.perf_counter() - began)
                if status >= 400:
                    errors["status"] += 1
        except (OSError, asyncio.IncompleteReadError):
            errors["read"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "duration_us": elapsed * 1e6,
        **errors,
        "p50_us": latencies[n // 2] * 1e6 if n else 0,
        "p99_us": latencies[min(n - 1, int(n * 0.99))] * 1e6 if n else 0,
        "mean_us": sum(latencies) / n * 1e6 if n else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("args", nargs="+", help="mode path [update_base secret], as for wrk.lua")
    options = parser.parse_args()
    summary = uvloop.run(run(options.port, options.connections, options.seconds, options.args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
