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
# creates it at start; "ready" once connected, create_all when told "go".
CHILD = """
import asyncio, sys
import app.models  # noqa: F401
import db_manager.telegram  # noqa: F401
from db_manager import Database, DatabaseSettings

async def main() -> int:
    host, port, user, database = sys.argv[1:5]
    settings = DatabaseSettings(
        driver="postgresql+asyncpg", host=host, port=int(port), user=user, database=database
    )
    db = Database(settings)
    await db.start()
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        try:
            await db.create_all()
        except Exception as exc:
            print(f"failed: {type(exc).__name__}: {exc}", flush=True)
            return 1
        print("started", flush=True)
        return 0
    finally:
        await db.dispose()

sys.exit(asyncio.run(main()))
"""


async def _round(database: str) -> list[tuple[int | None, str]]:
    children = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", CHILD, PG_HOST, str(PG_PORT), PG_USER, database),
            env=child_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(PROCESSES)
    ]
    try:
        async with asyncio.timeout(120):  # four interpreters on a possibly busy machine
            for child in children:
                assert child.stdout is not None
                seen: list[str] = []  # db_manager's own log lines come first
                while not seen or seen[-1] != "ready":
                    line = await child.stdout.readline()
                    assert line, "".join(seen)  # exited before it was ready
                    seen.append(line.decode().strip())
            for child in children:  # released together
                assert child.stdin is not None
                child.stdin.write(b"go\n")
            await asyncio.gather(*(child.stdin.drain() for child in children if child.stdin))
            outputs = await asyncio.gather(*(child.communicate() for child in children))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    return [
        (child.returncode, out.decode()) for child, (out, _) in zip(children, outputs, strict=True)
    ]


@pytest.mark.slow  # twenty interpreters importing the app: ~50 s on two busy cores
async def test_concurrent_first_starts_all_create_or_find_the_tables(pg_available: None) -> None:
    for attempt in range(ROUNDS):
        database = f"dbm_race_{uuid.uuid4().hex[:10]}"
        await admin_execute(f'CREATE DATABASE "{database}"')
        try:
            results = await _round(database)
        finally:
            await admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        failed = [output for code, output in results if code != 0]
        assert failed == [], f"round {attempt + 1}: {len(failed)} of {PROCESSES} failed:\n" + (
            "\n".join(failed)
        )
        for _, output in results:
            assert "started" in output.splitlines(), output


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
