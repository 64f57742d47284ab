"""A throwaway PostgreSQL that checks passwords: the shared server trusts every login.

:class:`PasswordServer` is a :class:`~tests.faults.helpers.PostgresServer` whose
``pg_hba.conf`` asks every role but the admin (``postgres``, still trusted, so the test's
own connections need no password) for a SCRAM password over TCP::

    server = PasswordServer()
    server.init(); server.start()
    await server.create_role("app_role", "old-secret", database="app_db")
    ...  # ALTER ROLE app_role PASSWORD '...' while the app runs
    server.destroy()
"""

from __future__ import annotations

from tests.faults.helpers import PostgresServer
from tests.support.postgres import PG_USER, pg_connect

__all__ = ["PasswordServer"]


class PasswordServer(PostgresServer):
    """Password authentication (scram-sha-256) for every role except ``postgres``."""

    def init(self) -> None:
        super().init()
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PG_USER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    async def admin(self, *statements: str, database: str = "postgres") -> None:
        """Run ``statements`` as the admin on ``database``."""
        conn = await pg_connect(port=self.port, database=database)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def create_role(self, role: str, password: str, *, database: str) -> None:
        """A login role with ``password`` and a database it owns."""
        await self.admin(
            f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'",
            f'CREATE DATABASE "{database}" OWNER "{role}"',
        )

    async def set_password(self, role: str, password: str) -> None:
        """Rotate ``role``'s password and end its sessions (as a rotation runbook does), so
        the app's next connection has to log in again."""
        await self.admin(
            f"ALTER ROLE \"{role}\" PASSWORD '{password}'",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
        )
