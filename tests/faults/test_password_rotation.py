"""The database refuses the login (SQLSTATE class 28: the password was rotated) on a server
that checks passwords (issue 11, points 2, 4 and 9):

* while the app runs: the webhook and the API answer 503 with ``Retry-After`` and roll back;
  ``/health/ready`` answers 503 with a fixed reason, the driver's message (role name) goes to
  the log only; once the password is right again, Telegram's redelivery is applied once;
* at start: the server prints one line (``DatabaseUnavailable: ...``), no traceback, no
  password.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from db_manager import DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.ports import free_port
from tests.support.postgres import PG_USER
from tests.support.processes import child_env
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    recorded_updates,
    scenario_app,
)
from tests.support.updates import message_update, next_update_id

from .conftest import require
from .password_server import PasswordServer

ROLE = "app_role"
DATABASE = "app_db"
OLD_PASSWORD = "old-Secret-4711"
NEW_PASSWORD = "new-Secret-0815"


@pytest.fixture
def password_server(pg_available: None) -> Iterator[PasswordServer]:
    require(PasswordServer.available())
    server = PasswordServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


def _settings(server: PasswordServer, password: str) -> DatabaseSettings:
    return DatabaseSettings(
        driver="postgresql+asyncpg",
        host="127.0.0.1",
        port=server.port,
        user=ROLE,
        password=password,
        database=DATABASE,
        connect_timeout=1.0,
    )


async def test_a_rotated_password_is_answered_503_and_the_redelivery_applied_once(
    password_server: PasswordServer,
) -> None:
    await password_server.create_role(ROLE, OLD_PASSWORD, database=DATABASE)

    async def noop(run: Run) -> None:
        await run.uow.session.execute(text("SELECT 1"))

    app = scenario_app(_settings(password_server, OLD_PASSWORD), {"noop": noop})
    observer = create_engine(
        DatabaseSettings(
            driver="postgresql+asyncpg",
            host="127.0.0.1",
            port=password_server.port,
            user=PG_USER,
            database=DATABASE,
        )
    )
    update = message_update("noop", update_id=next_update_id())
    try:
        async with running(app) as client:
            assert (await client.post("/run/noop")).status_code == 200
            await password_server.set_password(ROLE, NEW_PASSWORD)

            api = await client.post("/run/noop")
            hook = await post_update(client, update)
            with capture_logs() as logs:
                ready = await client.get("/health/ready")

            assert (api.status_code, api.headers.get("Retry-After")) == (503, "1"), api.text
            assert api.json()["error"] == "database_unavailable"
            assert (hook.status_code, hook.headers.get("Retry-After")) == (503, "1"), hook.text
            assert await count_marks(observer, "noop") == 1  # only the run before the rotation
            assert await recorded_updates(observer) == []

            # Point 2: the probe is public; its answer names no role, host or cause.
            assert ready.status_code == 503
            assert ready.json()["database"] == {
                "status": "unavailable",
                "reason": "database unavailable",
            }
            assert ROLE not in ready.text and "password" not in ready.text
            [entry] = [e for e in logs if e["event"] == "readiness check failed"]
            assert "password authentication failed" in entry["error"]
            assert OLD_PASSWORD not in entry["error"] and NEW_PASSWORD not in entry["error"]

            await password_server.set_password(ROLE, OLD_PASSWORD)
            again = await post_update(client, update)
            twice = await post_update(client, update)
            assert (again.status_code, twice.status_code) == (200, 200)
            assert await count_marks(observer, "noop") == 2
            assert await recorded_updates(observer) == [update["update_id"]]
            assert (await client.get("/health/ready")).status_code == 200
    finally:
        await observer.dispose()


async def test_a_wrong_password_at_start_is_one_line_without_the_password(
    password_server: PasswordServer, tmp_path: Path
) -> None:
    await password_server.create_role(ROLE, OLD_PASSWORD, database=DATABASE)
    env = child_env(
        DATABASE__DRIVER="postgresql+asyncpg",
        DATABASE__HOST="127.0.0.1",
        DATABASE__PORT=str(password_server.port),
        DATABASE__USER=ROLE,
        DATABASE__PASSWORD=NEW_PASSWORD,
        DATABASE__DATABASE=DATABASE,
        DATABASE__CONNECT_TIMEOUT="1",
        PYTHONUNBUFFERED="1",
    )
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "app", "run", "--port", str(free_port())),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(60):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = output.decode()
    case = f"exit {proc.returncode} after {time.monotonic() - started:.1f} s:\n{log}"

    assert proc.returncode != 0, case
    assert "Traceback" not in log, case
    assert NEW_PASSWORD not in log and OLD_PASSWORD not in log, case
    errors = [line for line in log.splitlines() if "DatabaseUnavailable" in line]
    assert len(errors) == 1, case
    [line] = errors
    assert "the database refused the login" in line, case
    assert f'password authentication failed for user "{ROLE}"' in line, case
    assert f"127.0.0.1:{password_server.port}/{DATABASE}" in line, case
