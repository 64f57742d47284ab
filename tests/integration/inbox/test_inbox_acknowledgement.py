"""Inbox mode acknowledges an update only once its row is committed (PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.asgi import ResponseStartProbe, running
from tests.support.postgres import admin_execute, pg_fetch, pg_settings
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    scenario_app,
    telegram_settings,
)
from tests.support.updates import message_update, next_update_id
from tests.support.waiting import wait_for

from .inbox_helpers import INBOX, marks_are, noop

pytestmark = pytest.mark.postgres


async def slow(run: Run) -> None:
    await asyncio.sleep(0.05)


async def inbox_rows(database: str, update_id: int) -> list[str]:
    """The statuses of ``update_id``'s rows, read on a connection of its own."""
    rows = await pg_fetch(
        f"SELECT status FROM {INBOX} WHERE update_id = $1", update_id, database=database
    )
    return [row["status"] for row in rows]


async def test_a_failing_commit_gets_no_2xx_and_leaves_no_row(pg_database: str) -> None:
    app = scenario_app(
        pg_settings(pg_database),
        {"noop": noop, "refuse-at-commit": noop},
        telegram=telegram_settings(processing="inbox", workers=1, poll_interval=0.1),
    )
    async with running(app) as client:
        # The INSERT succeeds; the deferred constraint trigger raises at COMMIT.
        await admin_execute(
            """CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF NEW.payload LIKE '%refuse-at-commit%' THEN
                   RAISE EXCEPTION 'refused at commit';
                 END IF;
                 RETURN NEW;
               END $$""",
            f"""CREATE CONSTRAINT TRIGGER refuse_marked AFTER INSERT ON {INBOX}
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_marked()""",
            database=pg_database,
        )
        refused = message_update("refuse-at-commit", update_id=next_update_id())
        answer = await post_update(client, refused)
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"]
        assert await inbox_rows(pg_database, refused["update_id"]) == []

        # The route is healthy otherwise: the next update is stored and applied.
        fine = message_update("noop", update_id=next_update_id())
        assert (await post_update(client, fine)).status_code == 200
        engine: AsyncEngine = app.state.engine
        assert await wait_for(lambda: marks_are(engine, "noop", 1), timeout=30)
        assert await count_marks(engine, "refuse-at-commit") == 0
    assert await inbox_rows(pg_database, refused["update_id"]) == []


async def test_twenty_concurrent_deliveries_leave_one_row_and_one_application(
    pg_database: str,
) -> None:
    app = scenario_app(
        pg_settings(pg_database),
        {"slow": slow},
        telegram=telegram_settings(processing="inbox", workers=4, poll_interval=0.1),
    )
    async with running(app) as client:
        update = message_update("slow", update_id=next_update_id())
        answers = await asyncio.gather(*(post_update(client, update) for _ in range(20)))
        assert sorted(a.status_code for a in answers) == [200] * 20
        assert len(await inbox_rows(pg_database, update["update_id"])) == 1

        async def done() -> bool:
            return await inbox_rows(pg_database, update["update_id"]) == ["done"]

        assert await wait_for(done, timeout=30)
        # Redelivered after it was applied: still acknowledged, still applied once.
        assert (await post_update(client, update)).status_code == 200
        await asyncio.sleep(0.3)  # give a wrongly re-queued copy time to run
        assert await count_marks(app.state.engine, "slow") == 1
    assert await inbox_rows(pg_database, update["update_id"]) == ["done"]


async def test_the_row_is_committed_when_the_200_starts(pg_database: str) -> None:
    app = scenario_app(
        pg_settings(pg_database),
        {"noop": noop},
        # No workers: the row stays pending, so what the probe sees is the webhook's commit.
        telegram=telegram_settings(processing="inbox", workers=0),
    )
    posted: list[int] = []

    async def committed_rows(scope: object) -> list[str]:
        return await inbox_rows(pg_database, posted[-1])

    probe = ResponseStartProbe(app, committed_rows)
    async with running(probe) as client:
        for _ in range(3):
            update = message_update("noop", update_id=next_update_id())
            posted.append(update["update_id"])
            assert (await post_update(client, update)).status_code == 200
    assert probe.seen == [["pending"]] * 3
