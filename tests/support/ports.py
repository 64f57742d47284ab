"""Loopback TCP ports for tests: a free one, one that listens and never answers, a probe."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

__all__ = ["free_port", "port_open", "silent_listener"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (bound once, then released): a server
    started on it next finds it free, and a client connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody ever answers: only a timeout
    ends a client's wait (a server that hangs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False
