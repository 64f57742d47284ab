"""Case 6: a real PgBouncer in transaction mode with 2 server connections in front of PostgreSQL.

PgBouncer (Debian package ``pgbouncer``) is started by the test on a free loopback port:
``pool_mode = transaction``, ``default_pool_size = 2``, ``auth_type = trust``. The app runs with
``pgbouncer = true``: 10 rounds of 40 concurrent requests, each doing two statements (a SELECT
and an UPDATE) in its transaction, give 400 answers 200, 0 prepared-statement errors, and
exactly 400 increments. The read path (``ReaderDep`` and ``/health/ready``) gets the same
load and the same result.

The control runs the same load with the switch off (and without the startup parameters
PgBouncer refuses, so that only prepared statements differ): asyncpg's and SQLAlchemy's
statement caches reuse names like ``__asyncpg_stmt_1__`` on whatever server connection
PgBouncer hands out, and the load fails with prepared-statement errors. That failure is
what proves the first test exercises something real.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from tests.support.pools import checked_out

from .faultapp import Item, build_app, scalar
from .helpers import PgBouncer, faults_settings, in_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROUNDS = 10
CONCURRENCY = 40


def prepared_statement_errors(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [
        str(entry.get("error"))
        for entry in logs
        if "prepared statement" in str(entry.get("error", "")).lower()
        or "prepared statement" in str(entry.get("exc_info", "")).lower()
    ]


async def run_load(settings: Any) -> tuple[Counter[int], list[MutableMapping[str, Any]], int]:
    app = build_app(settings)
    statuses: Counter[int] = Counter()
    with capture_logs() as logs:
        async with in_process(app) as client:
            for _ in range(ROUNDS):
                answers = await asyncio.gather(
                    *(client.post(f"/items/{i}/two") for i in range(1, CONCURRENCY + 1))
                )
                statuses.update(a.status_code for a in answers)
            leaked = checked_out(app)
    return statuses, logs, leaked


async def test_transaction_pooling_with_the_pgbouncer_switch(
    faults_db: str, pgbouncer: PgBouncer
) -> None:
    settings = faults_settings(
        faults_db, port=pgbouncer.port, pgbouncer=True, pool_size=10, max_overflow=30
    )
    statuses, logs, leaked = await run_load(settings)
    assert prepared_statement_errors(logs) == []
    assert statuses == Counter({200: ROUNDS * CONCURRENCY}), (statuses, logs[-5:])
    assert leaked == 0
    direct = faults_settings(faults_db)
    assert await scalar(direct, select(func.sum(Item.counter))) == ROUNDS * CONCURRENCY
    print(f"\npgbouncer switch on: {dict(statuses)}, 0 prepared-statement errors")


async def test_read_path_behind_pgbouncer(faults_db: str, pgbouncer: PgBouncer) -> None:
    """The read path (``ReaderDep``, ``/health/ready``) behind the same PgBouncer.

    Its autocommit statements (prepare, then execute, each ending in Sync) used to land on
    two server connections: 'prepared statement "__asyncpg_..." does not exist'. Behind
    PgBouncer each read now runs in a short transaction.
    """
    settings = faults_settings(
        faults_db, port=pgbouncer.port, pgbouncer=True, pool_size=10, max_overflow=30
    )
    app = build_app(settings)
    statuses: Counter[int] = Counter()
    with capture_logs() as logs:
        async with in_process(app) as client:
            for _ in range(ROUNDS):
                answers = await asyncio.gather(
                    *(client.get(f"/read/items/{i}") for i in range(1, CONCURRENCY + 1)),
                    *(client.get("/health/ready") for _ in range(5)),
                )
                statuses.update(a.status_code for a in answers)
    assert prepared_statement_errors(logs) == []
    assert statuses == Counter({200: ROUNDS * (CONCURRENCY + 5)}), (statuses, logs[-5:])


async def test_control_the_same_load_without_the_switch_fails(
    faults_db: str, pgbouncer: PgBouncer
) -> None:
    settings = faults_settings(
        faults_db,
        port=pgbouncer.port,
        pgbouncer=False,
        pool_size=10,
        max_overflow=30,
        # PgBouncer refuses these startup parameters; leave them out so that only the
        # prepared statements differ from the test above.
        idle_in_transaction_timeout=None,
        client_connection_check_interval=0,
    )
    statuses, logs, _leaked = await run_load(settings)
    errors = prepared_statement_errors(logs)
    assert errors, (statuses, logs[-5:])
    assert statuses[200] < ROUNDS * CONCURRENCY
    print(
        f"\npgbouncer switch off: {dict(statuses)}, {len(errors)} prepared-statement errors, "
        f"e.g. {errors[0]!r}"
    )
