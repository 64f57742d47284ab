"""Issue 3, acceptance 1-3 and 8: when the request's UnitOfWork commits, relative to the response.

* 1 - a commit that fails gets a non-2xx and leaves no row; a commit that succeeds is visible
  from another connection before the response starts (so before any client can hear 201).
* 2 - a handler that raises rolls back (HTTPException included); one that *returns* a 4xx
  response has finished normally, so its work is committed (decided and documented in
  ``db_manager.fastapi.get_uow``).
* 3 - read-your-writes with a COMMIT slowed to 300 ms, on a real uvicorn server.
* 8 - background tasks run after the commit with a UnitOfWork of their own; a stream that
  touches the request's closed session gets a clear error and no new connection.

The ``late`` route is a control: the same write through FastAPI's default dependency scope,
whose COMMIT runs after the response was sent. The tests that use it show that the checks
above notice the difference, so they would fail if ``UowDep`` lost ``scope="function"``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.util import await_only
from structlog.testing import capture_logs

from db_manager import DatabaseSettings, UnitOfWorkStateError
from tests.support.pools import checked_out, observer_engine
from tests.support.postgres import admin_execute, pg_settings, sqlite_settings
from tests.support.waiting import wait_for

from .fastapi_support import (
    Running,
    Thing,
    engine_of,
    events_of,
    in_process,
    names,
    on_uvicorn,
    thing_names,
)

# -- 1. commit before the response ----------------------------------------------------------------


async def count_named(settings: DatabaseSettings, name: str) -> int:
    engine = observer_engine(settings)
    try:
        async with engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(Thing).where(Thing.name == name)
            )
            return int(count or 0)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_deferred_unique_violation_at_commit_gets_409_and_no_row(pg_database: str) -> None:
    settings = pg_settings(pg_database)
    async with in_process(settings) as run:
        first = await run.client.post("/things", json={"name": "twin"})
        assert first.status_code == 201

        second = await run.client.post("/things", json={"name": "twin"})

        # The INSERT of the duplicate was flushed without error: only COMMIT could refuse it.
        assert names(run.events, "flushed") == ["twin", "twin"]
        assert names(run.events, "after_commit") == ["twin"]
        assert second.status_code == 409
        assert second.headers["content-type"] == "application/json"
        assert second.json()["error"] == "conflict"
        assert await count_named(settings, "twin") == 1
        assert checked_out(run.app) == 0


async def test_deferred_foreign_key_violation_at_commit_gets_409_and_no_row(
    db_settings: DatabaseSettings,
) -> None:
    """The same on both backends: SQLite checks a deferred foreign key at COMMIT too."""
    async with in_process(db_settings) as run:
        with capture_logs() as logs:
            response = await run.client.post("/things", json={"name": "orphan", "owner_id": 999})

        # Logged once, at ERROR, with the request path.
        errors = [e for e in logs if e["log_level"] == "error"]
        assert [(e["event"], e["path"], e["method"]) for e in errors] == [
            ("integrity error", "/things", "POST")
        ]
        assert names(run.events, "flushed") == ["orphan"]  # the flush passed
        assert names(run.events, "after_commit") == []  # the COMMIT did not
        assert response.status_code == 409
        assert response.json() == {
            "detail": "The request conflicts with existing data.",
            "error": "conflict",
        }
        assert await thing_names(db_settings) == set()
        assert checked_out(run.app) == 0


async def post_probed(run: Running, path: str, name: str) -> tuple[int, float]:
    response = await run.client.post(path, json={"name": name}, headers={"X-Probe-Name": name})
    return response.status_code, time.monotonic()


async def test_passing_request_is_visible_elsewhere_before_the_response_starts(
    db_settings: DatabaseSettings,
) -> None:
    async with in_process(db_settings) as run:
        status, received_at = await post_probed(run, "/things", "seen-early")

        assert status == 201
        [(_, _, committed_at)] = events_of(run.events, "after_commit")
        [(_, _, visible, started_at)] = events_of(run.events, "response_start")
        # The probe looked from a connection of its own when the response started: the row
        # was already committed, and the commit happened before the response began.
        assert visible is True
        assert committed_at <= started_at <= received_at
        kinds = [e[0] for e in run.events]
        assert kinds.index("after_commit") < kinds.index("response_start")


async def test_control_default_scope_commits_only_after_the_response_started(
    db_settings: DatabaseSettings,
) -> None:
    """Proves the probe above can tell: without ``scope="function"`` the row is not there yet
    when the response starts."""
    async with in_process(db_settings) as run:
        status, _ = await post_probed(run, "/things/late", "seen-late")

        assert status == 201
        [(_, _, visible, started_at)] = events_of(run.events, "response_start")
        [(_, _, committed_at)] = events_of(run.events, "after_commit")
        assert visible is False
        assert started_at < committed_at
        assert await thing_names(db_settings) == {"seen-late"}


# -- 2. errors in the handler, raised or returned --------------------------------------------------


async def test_http_exception_after_a_write_gets_400_and_no_row(
    db_settings: DatabaseSettings,
) -> None:
    async with in_process(db_settings) as run:
        response = await run.client.post("/things/http-error", json={"name": "refused"})

        assert response.status_code == 400
        assert response.json() == {"detail": "refused after the write"}
        assert names(run.events, "flushed") == ["refused"]  # the write reached the database
        assert await thing_names(db_settings) == set()
        assert checked_out(run.app) == 0


async def test_value_error_after_a_write_gets_500_json_and_no_row(
    db_settings: DatabaseSettings,
) -> None:
    async with in_process(db_settings) as run:
        response = await run.client.post("/things/value-error", json={"name": "buggy"})

        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"detail": "Internal server error.", "error": "internal_error"}
        assert "a bug after the write" not in response.text  # no internals leak to the client
        assert names(run.events, "flushed") == ["buggy"]
        assert await thing_names(db_settings) == set()
        assert checked_out(run.app) == 0


async def test_returned_4xx_response_commits_because_the_handler_returned(
    db_settings: DatabaseSettings,
) -> None:
    """Decided behaviour (documented on ``get_uow``): returning is success for the unit of
    work, whatever the status code; raise ``HTTPException`` to roll back."""
    async with in_process(db_settings) as run:
        response = await run.client.post("/things/returned-4xx", json={"name": "kept"})

        assert response.status_code == 400
        assert response.json() == {"detail": "returned, not raised"}
        assert names(run.events, "after_commit") == ["kept"]
        assert await thing_names(db_settings) == {"kept"}


async def test_dependencies_asking_for_the_unit_of_work_share_one(tmp_path: Path) -> None:
    """No statement runs, so one backend is enough."""
    async with in_process(sqlite_settings(tmp_path / "same.sqlite3")) as run:
        response = await run.client.get("/same-uow")
        assert response.json() == {"same": True}


# -- 3. read-your-writes with a slow COMMIT ------------------------------------------------------

COMMIT_DELAY = 0.3
TRIES = 20


async def slow_down_commits(run: Running) -> None:
    """Make every COMMIT of the app take ``COMMIT_DELAY`` seconds.

    PostgreSQL: a DEFERRABLE INITIALLY DEFERRED constraint trigger, so the server itself
    sleeps at COMMIT. SQLite has no such trigger; the app engine's ``commit`` event waits
    instead (without blocking the event loop) just before the COMMIT is sent.
    """
    if run.settings.dialect == "postgresql":
        await admin_execute(
            "CREATE FUNCTION fastapi_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({COMMIT_DELAY}); RETURN NULL; END $$",
            "CREATE CONSTRAINT TRIGGER fastapi_test_slow_commit AFTER INSERT "
            "ON fastapi_test__things DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION fastapi_test_slow_commit()",
            database=run.database,
        )
    else:
        engine = engine_of(run.app).sync_engine

        def note_write(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT"):
                conn.info["wrote"] = True

        def slow_commit(conn: Any) -> None:
            if conn.info.pop("wrote", False):  # like the trigger: only transactions that wrote
                await_only(asyncio.sleep(COMMIT_DELAY))

        event.listen(engine, "before_cursor_execute", note_write)
        event.listen(engine, "commit", slow_commit)


async def post_then_get(run: Running, path: str, name: str) -> tuple[float, int]:
    started = time.monotonic()
    posted = await run.client.post(path, json={"name": name})
    elapsed = time.monotonic() - started
    assert posted.status_code == 201
    got = await run.client.get(f"/things/{name}")
    return elapsed, got.status_code


async def test_read_your_writes_with_a_slow_commit(db_settings: DatabaseSettings) -> None:
    async with on_uvicorn(db_settings) as run:
        await slow_down_commits(run)
        misses = 0
        for i in range(TRIES):
            elapsed, status = await post_then_get(run, "/things", f"ryw-{i}")
            # The client waited for the slow COMMIT: it happened before the response.
            assert elapsed >= COMMIT_DELAY
            misses += status != 200
        assert misses == 0
        assert checked_out(run.app) == 0


@pytest.mark.postgres
async def test_control_default_scope_misses_its_own_writes(pg_database: str) -> None:
    """The same loop through the default-scope route misses: the check above can fail."""
    settings = pg_settings(pg_database)
    async with on_uvicorn(settings) as run:
        await slow_down_commits(run)
        results = [await post_then_get(run, "/things/late", f"late-{i}") for i in range(3)]
        assert [status for _, status in results].count(404) >= 1

        async def all_committed() -> bool:
            return len(await thing_names(settings)) == 3

        assert await wait_for(all_committed, timeout=5.0)


# -- 8. background tasks and streams ---------------------------------------------------------------


async def test_background_task_runs_after_the_commit_with_its_own_unit_of_work(
    db_settings: DatabaseSettings,
) -> None:
    async with in_process(db_settings) as run:
        response = await run.client.post("/things/with-background", json={"name": "parent"})

        assert response.status_code == 201
        kinds = [e[0] for e in run.events]
        assert kinds == ["flushed", "after_commit", "background_start", "background_done"]
        [(_, _, request_uow_closed, _)] = events_of(run.events, "background_start")
        assert request_uow_closed is True
        [(_, _, seen_id)] = events_of(run.events, "background_done")
        assert seen_id == response.json()["id"]  # its own UoW saw the committed row
        assert await thing_names(db_settings) == {"parent", "parent-bg"}
        assert checked_out(run.app) == 0


async def test_stream_touching_the_closed_request_session_gets_a_clear_error(
    db_settings: DatabaseSettings,
) -> None:
    async with in_process(db_settings) as run:
        response = await run.client.get("/things-stream")

        assert response.status_code == 200
        assert response.text.splitlines() == [
            "count 0",
            "uow.session: UnitOfWorkStateError",
            "captured session: InvalidRequestError",
            "new checkouts 0",
        ]
        errors = {where: exc for _, where, exc in events_of(run.events, "stream_error")}
        assert isinstance(errors["uow.session"], UnitOfWorkStateError)
        assert "already closed" in str(errors["uow.session"])
        captured = errors["captured session"]
        assert isinstance(captured, InvalidRequestError)
        assert "closed" in str(captured)
        assert checked_out(run.app) == 0
