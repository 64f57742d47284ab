"""db_manager.testing: each test runs in a transaction that is rolled back at its end.

The tests write through the real app (webhook and HTTP API) and check, without relying on
their order, that nothing leaks from one test into the next: each inserts the same unique
payment charge id, which would collide if an earlier test's row had survived.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.config import AppSection, Settings
from app.main import create_app
from app.models import Payment, User
from db_manager import DatabaseSettings, UnitOfWorkFactory
from db_manager.telegram import TelegramSettings
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, admin_execute
from tests.support.processes import REPO_ROOT, child_env
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, secret_header, start_update

API_TOKEN = "plugin-test-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def dbm_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseSettings]:
    """The plugin's database, overridden here to run the module on both backends."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("plugin") / "plugin.sqlite3"
        yield DatabaseSettings(database=str(path), create_tables=False)
        return
    request.getfixturevalue("pg_available")
    name = f"dbm_plugin_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield DatabaseSettings(
            driver="postgresql+asyncpg",
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            database=name,
            create_tables=False,
        )
    finally:
        asyncio.run(admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def dbm_app(dbm_settings: DatabaseSettings) -> Any:
    settings = Settings(
        app=AppSection(api_token=API_TOKEN),
        bot=TelegramSettings(token=BOT_TOKEN, webhook_secret=WEBHOOK_SECRET),
        database=dbm_settings,
    )
    return create_app(settings, bot_session=RecordingSession(), configure_logs=False)


async def _user_count(factory: UnitOfWorkFactory[Any]) -> int:
    async with factory() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(User)) or 0)


async def _post_start(client: httpx.AsyncClient, user_id: int) -> httpx.Response:
    return await client.post(
        "/webhook/telegram", json=start_update(user_id=user_id), headers=secret_header()
    )


@pytest.mark.parametrize("round_", [1, 2, 3])
async def test_rows_committed_through_the_app_do_not_outlive_the_test(
    dbm_client: httpx.AsyncClient, dbm_uow_factory: UnitOfWorkFactory[Any], round_: int
) -> None:
    assert await _user_count(dbm_uow_factory) == 0, "a previous test's rows leaked"

    response = await _post_start(dbm_client, 5001)
    assert response.status_code == 200
    seen = await dbm_client.get("/api/users/5001", headers=AUTH)
    assert seen.status_code == 200
    assert seen.json()["telegram_id"] == 5001

    # The same unique charge id in every round: a leaked row from an earlier round would
    # make this insert fail.
    async with dbm_uow_factory() as uow:
        user = await uow.session.scalar(select(User).where(User.telegram_id == 5001))
        assert user is not None
        uow.session.add(
            Payment(
                user_id=user.id,
                amount=50,
                currency="XTR",
                invoice_payload="premium_unlock",
                telegram_payment_charge_id="plugin-charge-1",
            )
        )
    stats = await dbm_client.get("/api/stats", headers=AUTH)
    assert stats.json()["payments"] == 1
    assert stats.json()["users"] == 1


async def test_test_data_is_visible_to_the_app(
    dbm_client: httpx.AsyncClient, dbm_uow_factory: UnitOfWorkFactory[Any]
) -> None:
    async with dbm_uow_factory() as uow:
        uow.session.add(User(telegram_id=6001, username="seeded"))
    response = await dbm_client.get("/api/users/6001", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["username"] == "seeded"


async def test_two_concurrent_requests_share_the_test_connection_safely(
    dbm_client: httpx.AsyncClient, dbm_uow_factory: UnitOfWorkFactory[Any]
) -> None:
    """Requests in one test are queued on the test's connection, never interleaved."""
    first, second = await asyncio.gather(
        _post_start(dbm_client, 7001), _post_start(dbm_client, 7002)
    )
    assert (first.status_code, second.status_code) == (200, 200)
    assert await _user_count(dbm_uow_factory) == 2
    both = await asyncio.gather(
        dbm_client.get("/api/users/7001", headers=AUTH),
        dbm_client.get("/api/users/7002", headers=AUTH),
    )
    assert [r.status_code for r in both] == [200, 200]


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    """This module's tests in a child pytest (which skips the shuffling test itself)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO_ROOT,
        env=child_env(DB_MANAGER_PLUGIN_NESTED="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_module_passes_in_random_order() -> None:
    """The isolation holds whatever the order: run this module shuffled, twice.

    pytest runs node ids in the order given on its command line (keeping together the tests
    that share a module-scoped backend), so a shuffled list is a shuffled run."""
    if os.environ.get("DB_MANAGER_PLUGIN_NESTED"):
        pytest.skip("already inside the shuffled run")
    module = Path(__file__).relative_to(REPO_ROOT).as_posix()
    collected = _pytest("--collect-only", "-q", module, "-k", "not random_order")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    ids = [line for line in collected.stdout.splitlines() if line.startswith(f"{module}::")]
    assert len(ids) >= 6, collected.stdout
    orders = []
    for seed in (1, 2):
        shuffled = random.Random(seed).sample(ids, len(ids))
        result = _pytest("-v", *shuffled)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        ran = [line.split(" ", 1)[0] for line in result.stdout.splitlines() if " PASSED" in line]
        assert sorted(ran) == sorted(ids), result.stdout[-3000:]
        orders.append(ran)
    assert ids not in orders and orders[0] != orders[1], orders
