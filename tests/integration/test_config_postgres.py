"""Settings against a real PostgreSQL: a role whose password is ``p@ss:w/rd%``.

The test server trusts local connections, so it never asks for the password; a small fake
server that does ask (cleartext) shows that exactly these bytes reach the wire.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from db_manager import (
    Database,
    DatabaseSettings,
    DatabaseUnavailable,
    UnitOfWork,
    create_engine,
    load_settings,
)
from tests.support.postgres import PG_HOST, PG_PORT, admin_execute, pg_settings

pytestmark = pytest.mark.postgres

PASSWORD = "p@ss:w/rd%"


@pytest.fixture
async def role(pg_database: str) -> AsyncIterator[str]:
    name = f"dbm_role_{uuid.uuid4().hex[:10]}"
    quoted_password = PASSWORD.replace("'", "''")
    await admin_execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{quoted_password}'")
    try:
        yield name
    finally:
        # The test disposed its engines; end any straggler so the role can go.
        await admin_execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'",
            f'DROP ROLE IF EXISTS "{name}"',
        )


async def current_user(settings: DatabaseSettings) -> str:
    engine = create_engine(settings)
    try:
        async with UnitOfWork(engine) as uow:
            return str(await uow.session.scalar(text("SELECT current_user")))
    finally:
        await engine.dispose()


def assert_parsed(settings: DatabaseSettings, role: str, database: str) -> None:
    url = settings.sqlalchemy_url
    assert url.password == PASSWORD
    assert url.username == role
    assert url.host == PG_HOST
    assert url.port == PG_PORT
    assert url.database == database
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(url)


async def test_role_with_special_character_password_connects_with_settings_from_parts(
    role: str, pg_database: str
) -> None:
    settings = pg_settings(pg_database, user=role, password=PASSWORD)

    assert_parsed(settings, role, pg_database)
    assert await current_user(settings) == role


async def test_role_with_special_character_password_connects_from_config_toml(
    role: str, pg_database: str, tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        "[database]\n"
        'driver = "postgresql+asyncpg"\n'
        f'user = "{role}"\n'
        f'password = "{PASSWORD}"\n'
        f'host = "{PG_HOST}"\n'
        f"port = {PG_PORT}\n"
        f'database = "{pg_database}"\n',
        encoding="utf-8",
    )

    settings = load_settings()

    assert_parsed(settings, role, pg_database)
    assert await current_user(settings) == role


async def test_role_with_special_character_password_connects_from_environment(
    role: str, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "DRIVER": "postgresql+asyncpg",
        "USER": role,
        "PASSWORD": PASSWORD,
        "HOST": PG_HOST,
        "PORT": str(PG_PORT),
        "DATABASE": pg_database,
    }.items():
        monkeypatch.setenv(f"DATABASE__{key}", value)

    settings = load_settings()

    assert_parsed(settings, role, pg_database)
    assert await current_user(settings) == role


async def test_database_start_with_the_role_logs_no_password(
    role: str, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database = Database(pg_settings(pg_database, user=role, password=PASSWORD))

    with capture_logs() as logs:
        await database.start()
        try:
            assert await database.ping() >= 0
            async with database.uow_factory() as uow:
                assert await uow.session.scalar(text("SELECT current_user")) == role
        finally:
            await database.dispose()

    assert [entry["event"] for entry in logs][:1] == ["database starting"]
    assert PASSWORD not in repr(logs)
    assert PASSWORD not in repr(database)
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err


# -- a fake server that asks for the password ------------------------------------------------

SSL_REQUEST = 80877103


class PasswordAskingServer:
    """Speaks just enough of the PostgreSQL protocol to ask for a cleartext password."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length, code = struct.unpack("!ii", await reader.readexactly(8))
            if code == SSL_REQUEST:
                writer.write(b"N")  # no TLS here
                await writer.drain()
                length, code = struct.unpack("!ii", await reader.readexactly(8))
            parts = (await reader.readexactly(length - 8)).split(b"\0")
            params = {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)}
            writer.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            await writer.drain()
            assert await reader.readexactly(1) == b"p"
            (size,) = struct.unpack("!i", await reader.readexactly(4))
            password = (await reader.readexactly(size - 4)).rstrip(b"\0").decode()
            self.received.append((params, password))
            fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed (fake)\0\0"
            writer.write(b"E" + struct.pack("!i", len(fields) + 4) + fields)
            await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            await writer.wait_closed()


async def test_special_character_password_reaches_the_server_byte_for_byte() -> None:
    fake = PasswordAskingServer()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = DatabaseSettings(
        driver="postgresql+asyncpg",
        user="app_user",
        password=PASSWORD,
        host="127.0.0.1",
        port=port,
        database="app_db",
        connect_timeout=2,
    )
    engine = create_engine(settings)
    try:
        # A refused login is transient (a rotated password): DatabaseUnavailable, a 503.
        with pytest.raises(DatabaseUnavailable) as info:
            async with UnitOfWork(engine) as uow:
                await uow.session.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
        server.close()
        await server.wait_closed()

    assert fake.received, "the client never sent a password"
    params, password = fake.received[0]
    assert password == PASSWORD
    assert params["user"] == "app_user"
    assert params["database"] == "app_db"
    assert params["application_name"] == "db_manager"
    assert "password authentication failed" in str(info.value)
    assert PASSWORD not in str(info.value)


# -- server-side settings of the engine ------------------------------------------------------


async def show(settings: DatabaseSettings, name: str) -> str:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return str(await conn.scalar(text(f"SHOW {name}")))
    finally:
        await engine.dispose()


async def test_engine_sets_the_server_side_timeouts(pg_database: str) -> None:
    settings = pg_settings(
        pg_database,
        statement_timeout=30,
        idle_in_transaction_timeout=45,
        application_name="dbm_tests",
    )

    assert await show(settings, "statement_timeout") == "30s"
    assert await show(settings, "idle_in_transaction_session_timeout") == "45s"
    assert await show(settings, "client_connection_check_interval") == "1s"
    assert await show(settings, "application_name") == "dbm_tests"


async def test_client_connection_check_interval_zero_is_not_sent(pg_database: str) -> None:
    # 0 means "leave the server alone", for PostgreSQL 13 and older that lack the setting.
    settings = pg_settings(pg_database, client_connection_check_interval=0)

    assert await show(settings, "client_connection_check_interval") == "0"
