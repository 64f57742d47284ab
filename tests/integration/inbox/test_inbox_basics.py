"""Inbox mode in one process: stored before the 200, applied once by the workers, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager.telegram.inbox import TelegramInboxItem
from tests.support.asgi import running
from tests.support.postgres import pg_settings, sqlite_settings
from tests.support.scenario_app import Mark, Run, post_update, scenario_app, telegram_settings
from tests.support.updates import message_update, next_update_id
from tests.support.waiting import wait_for

from .inbox_helpers import noop


async def slow(run: Run) -> None:
    await asyncio.sleep(0.02)


async def marks(app_engine: AsyncEngine) -> list[tuple[int, int]]:
    async with app_engine.connect() as conn:
        rows = await conn.execute(select(Mark.update_id, Mark.id).where(Mark.kind != "x"))
        return [(int(update_id or 0), int(id_)) for update_id, id_ in rows]


@pytest.mark.postgres
async def test_inbox_acknowledges_stored_updates_and_workers_apply_each_once(
    pg_database: str,
) -> None:
    app = scenario_app(
        pg_settings(pg_database),
        {"noop": noop, "slow": slow},
        telegram=telegram_settings(processing="inbox", workers=3, poll_interval=0.2),
    )
    async with running(app) as client:
        engine = app.state.engine
        update = message_update(text="slow", update_id=next_update_id())
        answers = await asyncio.gather(*(post_update(client, update) for _ in range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        chats = [1001 + n % 5 for n in range(40)]
        ids = []
        for chat in chats:
            body = message_update(
                text="slow", update_id=next_update_id(), chat_id=chat, user_id=chat
            )
            ids.append(body["update_id"])
            assert (await post_update(client, body)).status_code == 200

        async def all_done() -> bool:
            async with engine.connect() as conn:
                left = await conn.scalar(
                    text("select count(*) from db_manager__telegram_inbox where status <> 'done'")
                )
            return bool(left == 0)

        assert await wait_for(all_done, timeout=20)
        applied = await marks(engine)
    counted: dict[int, int] = {}
    for update_id, _ in applied:
        counted[update_id] = counted.get(update_id, 0) + 1
    assert counted[update["update_id"]] == 1
    assert all(counted[i] == 1 for i in ids)
    order = {update_id: id_ for update_id, id_ in applied}
    for chat in set(chats):
        mine = [i for i, c in zip(ids, chats, strict=True) if c == chat]
        assert sorted(mine, key=lambda i: order[i]) == mine


async def test_inbox_on_sqlite_in_one_process(tmp_path: Path) -> None:
    app = scenario_app(
        sqlite_settings(tmp_path / "db.sqlite", create_tables=True),
        {"noop": noop},
        telegram=telegram_settings(processing="inbox", workers=1, poll_interval=0.2),
    )
    async with running(app) as client:
        ids = []
        for _ in range(5):
            body = message_update(text="noop", update_id=next_update_id())
            ids.append(body["update_id"])
            assert (await post_update(client, body)).status_code == 200
        engine = app.state.engine

        async def all_done() -> bool:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(TelegramInboxItem.status))).scalars().all()
            return len(rows) == 5 and set(rows) == {"done"}

        assert await wait_for(all_done, timeout=10)
        assert sorted(u for u, _ in await marks(engine)) == ids


@pytest.mark.postgres
async def test_concurrent_deliveries_are_stored_together_and_each_acknowledged_once_stored(
    pg_database: str,
) -> None:
    """200 parallel deliveries of distinct updates (plus a copy of each): every answer is
    200, every update is stored once, and fewer storing transactions ran than updates."""
    app = scenario_app(
        pg_settings(pg_database),
        {"noop": noop},
        telegram=telegram_settings(processing="inbox", workers=0),
    )
    async with running(app) as client:
        engine = app.state.engine
        commits = 0

        def count(*_: object) -> None:
            nonlocal commits
            commits += 1

        event.listen(engine.sync_engine, "commit", count)
        bodies = [message_update(text="noop", update_id=next_update_id()) for _ in range(200)]
        answers = await asyncio.gather(*(post_update(client, b) for b in bodies + bodies))
        assert {a.status_code for a in answers} == {200}
        async with engine.connect() as conn:
            stored = (
                (await conn.execute(text("select update_id from db_manager__telegram_inbox")))
                .scalars()
                .all()
            )
    assert sorted(stored) == sorted(b["update_id"] for b in bodies)
    print(f"storing transactions for 400 deliveries: {commits}")
    assert commits < 200
