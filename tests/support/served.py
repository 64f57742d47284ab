"""An ASGI app factory of this checkout served by real uvicorn in a child process.

::

    with Served("app.main:create_app", env=database_env(settings)) as server:
        httpx.post(f"{server.base_url}/webhook/telegram", ...)
        server.restart()          # a new process on the same port, same environment
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from db_manager import DatabaseSettings
from tests.support.ports import free_port
from tests.support.processes import child_env

__all__ = ["Served", "database_env"]


def database_env(settings: DatabaseSettings) -> dict[str, str]:
    """``DATABASE__*`` variables that make a child load ``settings`` (no password: trust auth)."""
    env = {"DATABASE__DRIVER": settings.driver, "DATABASE__CREATE_TABLES": "true"}
    for name in ("host", "port", "user", "database"):
        value = getattr(settings, name)
        if value is not None:
            env[f"DATABASE__{name.upper()}"] = str(value)
    return env


class Served:
    """``uvicorn <factory> --factory`` on a free port; ``start`` waits for ``/health/live``."""

    #: Seconds between two ``/health/live`` probes while :meth:`start` waits for the child.
    live_interval = 0.1

    def __init__(self, factory: str, *, env: dict[str, str]) -> None:
        self.factory = factory
        self.env = env
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="served-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 40) -> None:
        """:meth:`launch` the child, then :meth:`wait_live`."""
        self.launch()
        self.wait_live(timeout)

    def launch(self) -> None:
        """Start ``python -m uvicorn`` in a session of its own, its output in :attr:`log`."""
        command = [
            sys.executable, "-m", "uvicorn", self.factory, "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=child_env(PYTHONUNBUFFERED="1", **self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_live(self, timeout: float) -> None:
        """Until ``/health/live`` answers 200; an error with the child's output if the child
        exits first or does not answer within ``timeout`` seconds."""
        process = self.process
        assert process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited ({process.returncode}):\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health/live", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start:\n{self.output()}")
            time.sleep(self.live_interval)

    def stop(self, timeout: float = 20) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Served:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)
