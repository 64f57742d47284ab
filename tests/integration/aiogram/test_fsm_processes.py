"""No lost update across processes (issue 14, point 3): 50 concurrent updates of one user,
each ``update_data(counter=counter + 1)``, spread over two uvicorn processes on one
PostgreSQL, end at 50 with SqlAlchemyStorage. The same with aiogram's RedisStorage, with
SimpleEventIsolation in each process and none across them, prints how many the peer loses (the anchor, not asserted).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage

from db_manager import Database, DatabaseSettings
from db_manager.telegram.fsm import SqlAlchemyStorage
from tests.support.postgres import pg_settings
from tests.support.served import Served, database_env
from tests.support.updates import BOT_ID, BOT_TOKEN, WEBHOOK_SECRET, message_update, secret_header

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FACTORY = "tests.integration.aiogram.fsm_counter_app:create_app"
REDIS_URL = "redis://127.0.0.1:6379/0"
USER = 424242
UPDATES = 50
KEY = StorageKey(bot_id=BOT_ID, chat_id=USER, user_id=USER)


@contextmanager
def two_processes(settings: DatabaseSettings, **env: str) -> Iterator[list[Served]]:
    full = {
        **database_env(settings),
        "BOT__TOKEN": BOT_TOKEN,
        "BOT__WEBHOOK_SECRET": WEBHOOK_SECRET,
        **env,
    }
    with ExitStack() as stack:
        yield [stack.enter_context(Served(FACTORY, env=full)) for _ in range(2)]


async def deliver_concurrently(servers: list[Served]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(i: int) -> None:
            server = servers[i % len(servers)]  # alternate: half the updates to each process
            response = await client.post(
                f"{server.base_url}/webhook/telegram",
                json=message_update("+1", user_id=USER),
                headers=secret_header(),
            )
            assert response.status_code == 200, (response.text, server.output())

        await asyncio.gather(*(post(i) for i in range(UPDATES)))


async def test_sqlalchemy_storage_loses_no_update_across_two_processes(
    pg_database: str,
) -> None:
    db_settings = pg_settings(pg_database)
    with two_processes(db_settings, FSM_STORAGE="sqlalchemy") as servers:
        await deliver_concurrently(servers)
    database = Database(db_settings)
    await database.start()
    try:
        data = await SqlAlchemyStorage(database.uow_factory).get_data(KEY)
    finally:
        await database.dispose()
    print(f"\nSqlAlchemyStorage, 2 processes: counter {data.get('counter')} of {UPDATES}")
    assert data == {"counter": UPDATES}


async def test_redis_storage_without_isolation_loses_updates_anchor(
    pg_database: str,
) -> None:
    db_settings = pg_settings(pg_database)
    prefix = f"fsmtest{uuid.uuid4().hex[:8]}"
    storage = RedisStorage.from_url(
        REDIS_URL, key_builder=DefaultKeyBuilder(prefix=prefix, with_bot_id=True)
    )
    try:
        with two_processes(
            db_settings,
            FSM_STORAGE="redis",
            FSM_REDIS_URL=REDIS_URL,
            FSM_REDIS_PREFIX=prefix,
            FSM_ISOLATION="simple",
        ) as servers:
            await deliver_concurrently(servers)
        counter = int((await storage.get_data(KEY)).get("counter", 0))
        await storage.set_data(KEY, {})
    finally:
        await storage.close()
    print(
        f"\nRedisStorage, 2 processes, isolation within each process only: counter {counter} of {UPDATES}, "
        f"{UPDATES - counter} updates lost"
    )
    assert 0 < counter <= UPDATES  # every update ran; how many survived is the anchor
