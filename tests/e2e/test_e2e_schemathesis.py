"""Bounded schemathesis run against the app's own OpenAPI document (issue 11, acceptance).

The app runs under real uvicorn (``tests.support.served``) on each backend, with a few
users and payments in its tables so that 200 answers are checked too. schemathesis
(``--checks all``, a fixed seed, up to 100 examples per operation, every phase) runs twice:
with the API token and without it. Both runs must end with no failure and no error, and
the server's JSON log must hold no traceback and no error line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from db_manager import DatabaseSettings, create_engine
from tests.support.processes import child_env
from tests.support.served import Served, database_env
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET

pytestmark = pytest.mark.slow

SEED = 20_261_201
EXAMPLES = 100
TOKEN = "schemathesis-api-token-0123456789"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
USERS = (1, 42, 2**63 - 1)


@pytest.fixture
def served(db_settings: DatabaseSettings) -> Iterator[Served]:
    env = {
        **database_env(db_settings),
        "APP__API_TOKEN": TOKEN,
        "APP__LOG_FORMAT": "json",
        # The bot on, so that /api/broadcast enqueues (without a bot it is 503), and no
        # outbox sender: the rows stay pending, nothing tries to reach Telegram.
        "BOT__TOKEN": BOT_TOKEN,
        "BOT__WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BOT__OUTBOX_SENDER": "false",
    }
    with Served("app.main:create_app", env=env) as server:
        yield server


async def _seed(settings: DatabaseSettings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            for telegram_id in USERS:
                await conn.execute(
                    text("INSERT INTO app__users (telegram_id, first_name) VALUES (:t, 'Ada')"),
                    {"t": telegram_id},
                )
            await conn.execute(
                text(
                    "INSERT INTO app__payments (user_id, amount, currency, invoice_payload,"
                    " telegram_payment_charge_id) SELECT id, :amount, 'XTR', 'premium_unlock',"
                    " 'stx-' || telegram_id FROM app__users"
                ),
                {"amount": 2**63 - 1},
            )
    finally:
        await engine.dispose()


# A key sent again for another request is answered 422 (the IETF idempotency draft's rule):
# which keys were used is state that no schema can describe, so that 422 is a valid answer
# to schema-valid data for the write route. Everything else keeps schemathesis's defaults.
CONFIG = """
[[operations]]
include-path = "/api/users/{telegram_id}/premium"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

# The broadcast: texts the schema admits but Telegram cannot send (only white space, NUL)
# get 422, as does a reused key.
[[operations]]
include-path = "/api/broadcast"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def _run(server: Served, report: Path, *, token: str | None) -> dict[str, Any]:
    config = report.with_name("schemathesis.toml")
    config.write_text(CONFIG)
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", f"{server.base_url}/openapi.json",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(EXAMPLES),
        "--workers", "1", "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    # Its hypothesis database goes to the report's folder, not into the checkout.
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=report.parent,
        env=child_env(),
        timeout=300,
        check=False,
    )
    summary: dict[str, Any] = json.loads(report.read_text())
    summary["output"] = result.stdout[-4000:] + result.stderr[-2000:]
    return summary


def _server_problems(log: str) -> list[str]:
    problems = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            # uvicorn's own lines (e.g. "WARNING:  Invalid HTTP request received." for the
            # probes with raw bytes in headers) are not JSON; a traceback or error is a problem.
            if line.startswith(("ERROR", "CRITICAL", "Traceback")):
                problems.append(line[:500])
            continue
        if "exception" in entry or entry.get("level") in {"error", "critical"}:
            problems.append(line[:500])
    return problems


async def test_schemathesis_finds_no_failure_with_and_without_the_token(
    served: Served, db_settings: DatabaseSettings, tmp_path: Path
) -> None:
    await _seed(db_settings)
    for token in (TOKEN, None):
        report = tmp_path / f"schemathesis-{'token' if token else 'anonymous'}.json"
        summary = await asyncio.to_thread(_run, served, report, token=token)
        cases = summary["test_cases"]
        print(
            f"\nschemathesis [{db_settings.driver}, {'with' if token else 'without'} token]"
            f" seed={SEED}: {summary['operations']['tested']} operations,"
            f" {cases['generated']} test cases, {cases['with_failures']} with failures,"
            f" {len(summary['errors'])} errors, {summary['running_time']:.1f}s"
        )
        assert summary["failures"] == [], summary["output"]
        assert summary["errors"] == [], summary["output"]
        assert summary["exit_code"] == 0, summary["output"]
        assert summary["operations"]["tested"] == summary["operations"]["selected"] >= 3
        assert cases["generated"] >= 100
    assert _server_problems(served.output()) == []
