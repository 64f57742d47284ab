"""The reference app in inbox mode: readiness shows the inbox, `python -m app worker` applies."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import AppSection, Settings
from app.main import create_app
from tests.support.asgi import running
from tests.support.fake_bot_api import FakeBotApi
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER, pg_fetch, pg_settings
from tests.support.processes import child_env
from tests.support.scenario_app import post_update, telegram_settings
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, message_update, next_update_id
from tests.support.waiting import wait_for

pytestmark = pytest.mark.postgres


def app_settings(database: str) -> Settings:
    # workers = 0: a web process that only stores updates.
    return Settings(
        app=AppSection(),
        bot=telegram_settings(processing="inbox", workers=0),
        database=pg_settings(database),
    )


async def test_readiness_shows_the_inbox_and_turns_503_while_draining(pg_database: str) -> None:
    app = create_app(
        app_settings(pg_database), bot_session=RecordingSession(), configure_logs=False
    )
    async with running(app) as client:
        for text in ("/feedback", "lovely"):
            update = message_update(text, update_id=next_update_id())
            assert (await post_update(client, update)).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        inbox = ready.json()["inbox"]
        assert inbox["pending"] == 2
        assert inbox["dead"] == 0
        assert inbox["workers"] == 0
        assert inbox["oldest_pending_age_seconds"] >= 0

        app.state.drain.begin()  # what SIGTERM starts
        draining = await client.get("/health/ready")
        assert draining.status_code == 503
        assert draining.json()["status"] == "draining"
        refused = await post_update(client, message_update("late", update_id=next_update_id()))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
    rows = await pg_fetch(
        "SELECT count(*) AS n FROM db_manager__telegram_inbox", database=pg_database
    )
    assert rows[0]["n"] == 2  # the refused one was not stored


async def test_python_m_app_worker_applies_stored_updates_and_exits_0_on_sigterm(
    pg_database: str, tmp_path: Path
) -> None:
    user = 6001
    texts = ("/feedback", "a fine story", "yes")
    app = create_app(
        app_settings(pg_database), bot_session=RecordingSession(), configure_logs=False
    )
    async with running(app) as client:
        for text in texts:
            update = message_update(text, update_id=next_update_id(), user_id=user)
            assert (await post_update(client, update)).status_code == 200

    async with FakeBotApi() as fake:
        env = child_env(
            DATABASE__URL=f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{pg_database}",
            BOT__TOKEN=BOT_TOKEN,
            BOT__WEBHOOK_SECRET=WEBHOOK_SECRET,
            BOT__PROCESSING="inbox",
            BOT__API_SERVER=fake.base_url,
            BOT__POLL_INTERVAL="0.2",
        )
        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "worker", "--workers", "2"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:

            async def applied() -> bool:
                if process.poll() is not None:
                    raise AssertionError(log_path.read_text(errors="replace"))
                rows = await pg_fetch(
                    "SELECT count(*) AS n FROM db_manager__telegram_inbox WHERE status = 'done'",
                    database=pg_database,
                )
                return bool(rows[0]["n"] == len(texts))

            assert await wait_for(applied, timeout=60), log_path.read_text(errors="replace")
            feedback = await pg_fetch(
                "SELECT telegram_id, text FROM app__feedback", database=pg_database
            )
            assert [(r["telegram_id"], r["text"]) for r in feedback] == [(user, "a fine story")]
            await fake.wait_calls(len(texts), method="sendMessage", timeout=30)
            assert fake.sent_texts(chat_id=user)[-1] == "Thank you! Your feedback is saved."
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError("the worker did not stop within 30 s of SIGTERM") from None
    output = log_path.read_text(errors="replace")
    assert code == 0, output
    assert "inbox worker process draining" in output
    assert "Traceback" not in output, output
    assert BOT_TOKEN not in output
