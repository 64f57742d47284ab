"""A throwaway PostgreSQL primary with two streaming replicas, for the replica suite.

Built on the fault suite's :class:`~tests.faults.helpers.PostgresServer` (initdb into a temp dir,
run as the ``postgres`` user when we are root, a free loopback port); the replicas are
``pg_basebackup -R`` copies of the primary. The shared server is never touched, and
:meth:`Cluster.destroy` stops everything (``-m immediate``) and removes the directories.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.faults.helpers import PostgresServer
from tests.support.postgres import PG_USER, pg_connect


class Standby(PostgresServer):
    """A streaming replica of ``primary``: a base backup with ``standby.signal`` (``-R``)."""

    def clone(self, primary: PostgresServer, *, apply_delay_ms: int = 0) -> None:
        self._run(
            str(self.bin_dir / "pg_basebackup"),
            "-D",
            str(self.data),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            PG_USER,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        if apply_delay_ms:
            # Appended to the file -R wrote, so the delay survives restarts of the standby.
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                conf.write(f"recovery_min_apply_delay = '{apply_delay_ms}ms'\n")

    async def set_apply_delay(self, milliseconds: int) -> None:
        conn = await pg_connect(port=self.port, database="postgres")
        try:
            await conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{milliseconds}ms'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()


class Cluster:
    """``primary``, ``fast`` (no delay) and ``slow`` (replay delayed by ``delay_ms``)."""

    def __init__(self, delay_ms: int) -> None:
        self.delay_ms = delay_ms
        self.primary = PostgresServer()
        self.fast = Standby()
        self.slow = Standby()

    @property
    def servers(self) -> tuple[PostgresServer, ...]:
        return (self.primary, self.fast, self.slow)

    def create(self) -> None:
        self.primary.init()
        self.primary.start()
        self.fast.clone(self.primary)
        self.fast.start()
        self.slow.clone(self.primary, apply_delay_ms=self.delay_ms)
        self.slow.start()

    def destroy(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.destroy()

    def base_dirs(self) -> list[Path]:
        return [server.base for server in self.servers]
