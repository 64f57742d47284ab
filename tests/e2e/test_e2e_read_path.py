"""The HTTP API reads through the read path: it answers while the main pool is exhausted.

The bot's writes and the API's reads have separate pools (``[database] pool_size`` and
``read_pool_size``): with every main-pool connection held, a read route still answers at
once, and each answer gives its read connection back.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from app.main import create_app
from db_manager import DatabaseSettings
from tests.support.asgi import running
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_USERNAME, secret_header, start_update

from .e2e_support import API_TOKEN, USER_A, app_settings
from .outbox_support import bot_settings

PATHS = ("/api/stats", f"/api/users/{USER_A}", f"/api/users/{USER_A}/payments")


def _checked_out(pool: object) -> int:
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def test_api_answers_while_every_main_pool_connection_is_held(
    db_settings: DatabaseSettings,
) -> None:
    database = db_settings.model_copy(
        update={"pool_size": 1, "max_overflow": 0, "pool_timeout": 1.0}
    )
    # Without the outbox sender: it would share the one main-pool connection (its claims
    # run on the main engine) and this test is about the read path's own pool.
    settings = replace(app_settings(database), bot=bot_settings(outbox_sender=False))
    app = create_app(
        settings, bot_session=RecordingSession(bot_username=BOT_USERNAME), configure_logs=False
    )
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with running(app) as client:
        hook = settings.bot.webhook_path
        response = await client.post(
            hook, json=start_update(user_id=USER_A), headers=secret_header()
        )
        assert response.status_code == 200, response.text
        main_pool = app.state.database.engine.pool
        read_pool = app.state.database.reader.engine.pool
        async with app.state.database.engine.connect() as held:
            await held.execute(text("SELECT 1"))
            assert _checked_out(main_pool) == 1  # the main pool has nothing left to give
            for path in PATHS:
                # Well inside pool_timeout: nothing waited for the main pool.
                answer = await asyncio.wait_for(client.get(path, headers=headers), 0.8)
                assert answer.status_code == 200, (path, answer.text)
                assert _checked_out(read_pool) == 0
        assert (await client.get(PATHS[0], headers=headers)).json()["users"] == 1
