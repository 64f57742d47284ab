"""Processes that start at the same moment on an empty PostgreSQL database all create the
tables, or find them made (issue 11, point 8): four processes, released together after each
has connected, five times; every one of the twenty starts.

Without serialization two concurrent ``CREATE TABLE`` of one name collide in ``pg_type``
(``UniqueViolationError ... pg_type_typname_nsp_index``).
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from db_manager import Database, SchemaError
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, admin_execute, pg_settings
from tests.support.processes import child_env

pytestmark = pytest.mark.postgres

PROCESSES = 4
ROUNDS = 5

# The app's metadata (app.models and db_manager's Telegram tables), as `python -m app run`
# creates it at start. A child imports once and serves every round: it gets a database name,
# connects, says "ready", and runs create_all when told "go".
CHILD = """
import asyncio, sys
import app.models  # noqa: F401
import db_manager.telegram  # noqa: F401
from db_manager import Database, DatabaseSettings

async def main() -> int:
    host, port, user = sys.argv[1:4]
    loop = asyncio.get_running_loop()
    while database := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        settings = DatabaseSettings(
            driver="postgresql+asyncpg", host=host, port=int(port), user=user, database=database
        )
        db = Database(settings)
        await db.start()
        try:
            print("ready", flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
            try:
                await db.create_all()
            except Exception as exc:
                print(f"failed: {type(exc).__name__}: {exc}", flush=True)
            else:
                print("started", flush=True)
        finally:
            await db.dispose()
    return 0

sys.exit(asyncio.run(main()))
"""


async def _read_until(child: asyncio.subprocess.Process, *markers: str) -> str:
    """Lines up to one that starts with a marker (db_manager's own log lines come first)."""
    assert child.stdout is not None
    seen: list[str] = []
    while True:
        line = await child.stdout.readline()
        assert line, "\n".join(seen)  # exited early
        seen.append(line.decode().strip())
        if seen[-1].startswith(markers):
            return seen[-1]


async def _send(children: list[asyncio.subprocess.Process], line: str) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write(line.encode() + b"\n")
    await asyncio.gather(*(child.stdin.drain() for child in children if child.stdin))


async def _round(children: list[asyncio.subprocess.Process], database: str) -> list[str]:
    async with asyncio.timeout(60):
        await _send(children, database)
        await asyncio.gather(*(_read_until(child, "ready") for child in children))
        await _send(children, "go")  # released together, each already connected
        return list(
            await asyncio.gather(*(_read_until(child, "started", "failed") for child in children))
        )


@pytest.mark.slow  # four interpreters importing the app, then five rounds
async def test_concurrent_first_starts_all_create_or_find_the_tables(pg_available: None) -> None:
    children = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", CHILD, PG_HOST, str(PG_PORT), PG_USER),
            env=child_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(PROCESSES)
    ]
    started = 0
    try:
        for attempt in range(ROUNDS):
            database = f"dbm_race_{uuid.uuid4().hex[:10]}"
            await admin_execute(f'CREATE DATABASE "{database}"')
            try:
                results = await _round(children, database)
            finally:
                await admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            failed = [line for line in results if line != "started"]
            assert failed == [], (
                f"round {attempt + 1}: {len(failed)} of {PROCESSES} failed: {failed}"
            )
            started += len(results)
        await _send(children, "")
        codes = await asyncio.gather(*(child.wait() for child in children))
        assert codes == [0] * PROCESSES
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert started == PROCESSES * ROUNDS


async def test_a_create_all_failure_is_one_line(pg_database: str) -> None:
    role = f"dbm_role_{uuid.uuid4().hex[:10]}"
    await admin_execute(f'CREATE ROLE "{role}" LOGIN')
    await admin_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC", database=pg_database)
    metadata = MetaData()
    Table("race_things", metadata, Column("id", Integer, primary_key=True))
    database = Database(pg_settings(pg_database, user=role), metadata=metadata)
    try:
        await database.start()
        with pytest.raises(SchemaError) as raised:
            await database.create_all()
    finally:
        await database.dispose()
        await admin_execute(f'DROP ROLE IF EXISTS "{role}"')
    message = str(raised.value)
    assert "\n" not in message, message
    assert message.startswith("creating tables failed: InsufficientPrivilegeError: "), message
    assert "permission denied for schema public" in message
