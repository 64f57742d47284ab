"""While ``hide_parameters`` is on (the default), no parameter value appears where db_manager
logs or returns a driver error (issue 11, point 3): not in the API's answer or log line, not
in the webhook's log line nor in the traceback it logs. Two ways a driver quotes a value are
provoked on PostgreSQL: asyncpg encoding an argument (``invalid input for query argument $1:
<value>``) and the server parsing one (``invalid input syntax for type integer: "<value>"``).
"""

from __future__ import annotations

import traceback
from collections.abc import MutableMapping
from typing import Any

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from db_manager import DatabaseSettings
from tests.support.asgi import running
from tests.support.postgres import pg_settings
from tests.support.scenario_app import Run, post_update, scenario_app
from tests.support.updates import message_update, next_update_id

pytestmark = pytest.mark.postgres

HUGE = 9223372036854775808  # 2**63: asyncpg refuses to encode it as a bigint
WORD = "hunter2-not-a-number"  # the server refuses to read it as an integer


async def huge_argument(run: Run) -> None:
    await run.uow.session.execute(text("SELECT CAST(:v AS BIGINT)"), {"v": HUGE})


async def unparsable_text(run: Run) -> None:
    await run.uow.session.execute(text("SELECT CAST(CAST(:v AS TEXT) AS INTEGER)"), {"v": WORD})


CASES = {"huge_argument": (huge_argument, str(HUGE)), "unparsable_text": (unparsable_text, WORD)}


def _rendered(entry: MutableMapping[str, Any]) -> str:
    """The log entry as a renderer would print it, traceback included."""
    exc_info = entry.get("exc_info")
    frames = ""
    if isinstance(exc_info, BaseException):
        frames = "".join(traceback.format_exception(exc_info))
    return f"{entry}\n{frames}"


@pytest.mark.parametrize("name", list(CASES))
async def test_no_parameter_value_in_answers_or_logs(pg_database: str, name: str) -> None:
    scenario, value = CASES[name]
    app = scenario_app(pg_settings(pg_database), {name: scenario})
    async with running(app) as client:
        with capture_logs() as logs:
            api = await client.post(f"/run/{name}")
            hook = await post_update(client, message_update(name, update_id=next_update_id()))

    assert api.status_code == 500  # a bad query, not an outage
    assert value not in api.text
    assert hook.status_code == 200  # a handler bug: rolled back and acknowledged
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [e["event"] for e in errors] == [
        "database error",
        "update handler failed; rolled back and acknowledged",
    ]
    for entry in errors:
        assert value not in _rendered(entry), entry
        assert "[hidden]" in entry["error"], entry  # what was wrong is still said
    # The webhook still logs where it happened: the traceback reaches the scenario.
    webhook = errors[1]
    assert isinstance(webhook["exc_info"], BaseException)
    assert f"in {name}" in _rendered(webhook)


async def test_values_are_shown_when_hide_parameters_is_off(pg_database: str) -> None:
    settings: DatabaseSettings = pg_settings(pg_database, hide_parameters=False)
    app = scenario_app(settings, {"unparsable_text": unparsable_text})
    async with running(app) as client:
        with capture_logs() as logs:
            api = await client.post("/run/unparsable_text")
    assert api.status_code == 500
    [entry] = [e for e in logs if e["log_level"] == "error"]
    assert WORD in entry["error"]
