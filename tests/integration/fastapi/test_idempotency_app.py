"""The reference app's write route, ``POST /api/users/{telegram_id}/premium``, with idempotency keys.

The real ``create_app`` (Telegram replaced by a recording session, nothing of ours patched),
on both backends: the grant and its answer are stored once per key and token, a retry gets
the first answer back, and OpenAPI declares the route with every status it can answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import insert, select, text

from app.config import AppSection, Settings
from app.main import create_app
from app.models import User
from db_manager import DatabaseSettings, create_engine
from db_manager.idempotency import IdempotencyKey
from db_manager.telegram import TelegramSettings
from tests.support.asgi import running
from tests.support.telegram import RecordingSession

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "idem-api-token-0123456789"
USER = 7_100_001
PATH = f"/api/users/{USER}/premium"


@asynccontextmanager
async def deployed(database: DatabaseSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = Settings(
        app=AppSection(api_token=SecretStr(TOKEN)),
        bot=TelegramSettings(token=SecretStr("123:IDEM"), webhook_secret=SecretStr("idem-secret")),
        database=database.model_copy(update={"create_tables": True}),
    )
    app = create_app(settings, bot_session=RecordingSession(), configure_logs=False)
    async with running(app) as client:
        yield app, client


async def add_user(app: FastAPI, telegram_id: int) -> None:
    async with app.state.uow_factory() as uow:
        await uow.users.add(User(telegram_id=telegram_id))


async def scalar(database: DatabaseSettings, sql: str) -> Any:
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


def auth(key: str | None = None, token: str = TOKEN) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def test_a_retried_grant_gets_the_first_answer_and_a_new_request_the_current_one(
    db_settings: DatabaseSettings,
) -> None:
    async with deployed(db_settings) as (app, client):
        await add_user(app, USER)
        first = await client.post(PATH, headers=auth("grant-1"))
        retry = await client.post(PATH, headers=auth("grant-1"))
        fresh = await client.post(PATH, headers=auth())

    assert first.status_code == retry.status_code == fresh.status_code == 200
    assert first.json() == {"telegram_id": USER, "premium": True, "granted": True}
    assert retry.content == first.content and retry.headers["Idempotent-Replayed"] == "true"
    assert fresh.json()["granted"] is False  # without the key: the grant already happened
    premium = "SELECT count(*) FROM app__novel_states WHERE premium"
    assert await scalar(db_settings, premium) == 1
    keys = "SELECT scope FROM db_manager__idempotency_keys"
    scope = await scalar(db_settings, keys)
    assert scope.startswith("api-token:") and TOKEN not in scope  # the token's hash, never it


async def test_refusals_store_no_key_and_the_retry_runs(db_settings: DatabaseSettings) -> None:
    async with deployed(db_settings) as (app, client):
        wrong_token = await client.post(PATH, headers=auth("grant-2", token="not-the-token"))
        no_user = await client.post(PATH, headers=auth("grant-2"))
        assert await scalar(db_settings, "SELECT count(*) FROM db_manager__idempotency_keys") == 0

        await add_user(app, USER)
        retry = await client.post(PATH, headers=auth("grant-2"))
        other_user = await client.post("/api/users/5/premium", headers=auth("grant-2"))

    assert wrong_token.status_code == 401
    assert no_user.status_code == 404
    assert retry.status_code == 200 and retry.json()["granted"] is True
    assert "Idempotent-Replayed" not in retry.headers
    assert other_user.status_code == 422  # the same key for another path
    assert "already used" in other_user.json()["detail"]


async def test_openapi_declares_the_write_route_its_key_and_its_statuses(
    db_settings: DatabaseSettings,
) -> None:
    async with deployed(db_settings) as (_app, client):
        document = (await client.get("/openapi.json")).json()

    operation = document["paths"]["/api/users/{telegram_id}/premium"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "404", "409", "422", "503"}
    header = next(p for p in operation["parameters"] if p["in"] == "header")
    assert header["name"] == "Idempotency-Key" and header["required"] is False
    assert operation["security"] == [{"api_token": []}]
    assert "Retry-After" in operation["responses"]["409"]["headers"]


async def test_the_prune_command_deletes_expired_keys_only(tmp_path: Path) -> None:
    database = tmp_path / "prune.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\ndriver = "sqlite+aiosqlite"\ndatabase = "{database}"\n')
    engine = create_engine(DatabaseSettings(driver="sqlite+aiosqlite", database=str(database)))
    now = dt.datetime.now(dt.UTC)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(IdempotencyKey.__table__.create)  # type: ignore[attr-defined]
            await conn.execute(
                insert(IdempotencyKey),
                [
                    {
                        "scope": "s",
                        "key": name,
                        "request_hash": "h",
                        "created_at": now,
                        "expires_at": now + dt.timedelta(hours=hours),
                    }
                    for name, hours in (("expired", -1), ("live", 1))
                ],
            )
    finally:
        await engine.dispose()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("DATABASE__", "APP__", "BOT__", "CONFIG_FILE"))
    }
    env["PYTHONPATH"] = str(ROOT)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "--config", str(config), "prune-idempotency-keys"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "deleted 1 expired idempotency keys" in result.stdout
    engine = create_engine(DatabaseSettings(driver="sqlite+aiosqlite", database=str(database)))
    try:
        async with engine.connect() as conn:
            left = (await conn.execute(select(IdempotencyKey.key))).scalars().all()
    finally:
        await engine.dispose()
    assert left == ["live"]
