"""Failures a retry can cure are answered 503 with ``Retry-After``, on the API and the webhook,
and the work is rolled back (issue 11, point 4): too many connections for the role (53300),
a statement cancelled by ``statement_timeout`` (57014), a lock wait ended by ``lock_timeout``
(55P03), a deadlock (40P01) and a serialization failure (40001), each provoked for real on
the shared PostgreSQL. After the cause is gone, Telegram's redelivery is applied once.

(Authentication failures need a server that checks passwords: tests/faults/test_password_rotation.py.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from db_manager import DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.postgres import admin_execute, pg_connect, pg_fetch, pg_settings
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    recorded_updates,
    scenario_app,
)
from tests.support.updates import message_update, next_update_id
from tests.support.waiting import wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
async def app_role(pg_available: None) -> AsyncIterator[tuple[str, str]]:
    """A login role of its own and a database it owns: ``(role, database)``."""
    suffix = uuid.uuid4().hex[:10]
    role, database = f"dbm_role_{suffix}", f"dbm_test_{suffix}"
    await admin_execute(
        f'CREATE ROLE "{role}" LOGIN', f'CREATE DATABASE "{database}" OWNER "{role}"'
    )
    try:
        yield role, database
    finally:
        await admin_execute(
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{role}"'
        )


def _settings(role: str, database: str, **overrides: Any) -> DatabaseSettings:
    return pg_settings(database, user=role, **overrides)


async def _both_answer_503(
    settings: DatabaseSettings, name: str, scenario: Callable[[Run], Awaitable[None]]
) -> int:
    """Run ``scenario`` through the API and the webhook: both 503 + Retry-After, nothing
    committed. Returns the update id, for a redelivery."""
    app = scenario_app(settings, {name: scenario})
    observer = create_engine(settings)
    update_id = next_update_id()
    try:
        async with running(app) as client:
            api = await client.post(f"/run/{name}")
            assert api.status_code == 503, api.text
            assert api.headers["Retry-After"] == "1"
            assert api.json()["error"] == "database_unavailable"

            hook = await post_update(client, message_update(name, update_id=update_id))
            assert hook.status_code == 503, hook.text
            assert hook.headers["Retry-After"] == "1"

            assert await count_marks(observer, name) == 0  # both rolled back
            assert await recorded_updates(observer) == []  # so the redelivery is applied
            assert app.state.engine.pool.checkedout() == 0
    finally:
        await observer.dispose()
    return update_id


async def test_statement_timeout_is_transient(app_role: tuple[str, str]) -> None:
    async def slow(run: Run) -> None:
        await run.uow.session.execute(text("SET LOCAL statement_timeout = '100ms'"))
        await run.uow.session.execute(text("SELECT pg_sleep(5)"))

    await _both_answer_503(_settings(*app_role), "slow", slow)


async def test_lock_timeout_is_transient(app_role: tuple[str, str]) -> None:
    role, database = app_role
    holder = await pg_connect(database=database)
    await holder.execute("SELECT pg_advisory_lock(4242)")

    async def blocked(run: Run) -> None:
        await run.uow.session.execute(text("SET LOCAL lock_timeout = '100ms'"))
        await run.uow.session.execute(text("SELECT pg_advisory_xact_lock(4242)"))

    try:
        await _both_answer_503(_settings(role, database), "blocked", blocked)
    finally:
        await holder.close()


async def test_deadlock_is_transient(app_role: tuple[str, str]) -> None:
    role, database = app_role
    other = await pg_connect(database=database)
    # The other side detects late, so the deadlock is always broken in the app's transaction.
    await other.execute("SET deadlock_timeout = '10s'")

    async def deadlocked(run: Run) -> None:
        session = run.uow.session
        await session.execute(text("SELECT pg_advisory_xact_lock(1)"))
        await other.execute("BEGIN")
        await other.execute("SELECT pg_advisory_xact_lock(2)")
        # The other side now waits for lock 1 (held here) while this one waits for lock 2.
        waiter = asyncio.ensure_future(other.execute("SELECT pg_advisory_xact_lock(1)"))
        try:
            assert await wait_for(lambda: _waiting_for_lock(database, 1), timeout=5)
            await session.execute(text("SELECT pg_advisory_xact_lock(2)"))
        finally:
            await waiter  # granted once the app's transaction is rolled back
            await other.execute("ROLLBACK")

    # The app's own session detects the cycle after its deadlock_timeout.
    settings = _settings(role, database)
    try:
        await admin_execute(f"ALTER ROLE \"{role}\" SET deadlock_timeout = '100ms'")
        await _both_answer_503(settings, "deadlocked", deadlocked)
    finally:
        await other.close()


async def _waiting_for_lock(database: str, key: int) -> bool:
    rows = await pg_fetch(
        "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = $1 AND d.datname = $2",
        key,
        database,
    )
    return bool(rows)


async def test_serialization_failure_is_transient(app_role: tuple[str, str]) -> None:
    role, database = app_role
    await admin_execute(
        "CREATE TABLE counter (n integer)",
        "INSERT INTO counter VALUES (0)",
        f'GRANT ALL ON counter TO "{role}"',
        database=database,
    )

    async def conflicting(run: Run) -> None:
        session = run.uow.session
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        await session.execute(text("SELECT n FROM counter"))  # the snapshot is taken
        await admin_execute("UPDATE counter SET n = n + 1", database=database)
        await session.execute(text("UPDATE counter SET n = n + 1"))

    await _both_answer_503(_settings(role, database), "conflicting", conflicting)


async def test_too_many_connections_is_transient_and_the_redelivery_is_applied_once(
    app_role: tuple[str, str],
) -> None:
    role, database = app_role
    settings = _settings(role, database)

    async def noop(run: Run) -> None:
        await run.uow.session.execute(text("SELECT 1"))

    app = scenario_app(settings, {"noop": noop})
    observer = create_engine(pg_settings(database))  # as the admin: not limited
    update = message_update("noop", update_id=next_update_id())
    try:
        async with running(app) as client:
            await admin_execute(
                f'ALTER ROLE "{role}" CONNECTION LIMIT 0',
                # The pooled connections go; every new one is refused (53300).
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            )
            api = await client.post("/run/noop")
            hook = await post_update(client, update)
            assert (api.status_code, api.headers.get("Retry-After")) == (503, "1"), api.text
            assert (hook.status_code, hook.headers.get("Retry-After")) == (503, "1"), hook.text
            assert await count_marks(observer, "noop") == 0

            await admin_execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
            again = await post_update(client, update)
            twice = await post_update(client, update)
            assert (again.status_code, twice.status_code) == (200, 200)
            assert await count_marks(observer, "noop") == 1
            assert await recorded_updates(observer) == [update["update_id"]]
    finally:
        await observer.dispose()
