"""Flood control, read from the fake Bot API server's own timestamps: Telegram's limits per
chat and per bot are kept at full speed, and a 429 pauses exactly the chat it names."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram.methods import SendMessage

from db_manager import Database, UnitOfWork
from db_manager.telegram.outbox import enqueue
from tests.integration.outbox_helpers import (
    BOT_ID,
    running_sender,
    sent_texts,
    settled,
    started_database,
    until,
)
from tests.support.fake_bot_api import FakeBotApi, max_per_window, min_gap_per_chat
from tests.support.postgres import pg_settings

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def pg_db(pg_database: str) -> AsyncIterator[Database[UnitOfWork]]:
    # Room for 16 sends in flight besides the test's own connections.
    async with started_database(pg_settings(pg_database, pool_size=20)) as database:
        yield database


async def test_300_private_chats_at_the_default_limits(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    n = 300
    async with pg_db.uow_factory() as uow:
        for chat in range(1, n + 1):
            await enqueue(uow, BOT_ID, SendMessage(chat_id=chat, text=f"m{chat}"))
    # 16 in flight: the rate stays the bot's limit, not this host's round trips, also when
    # the host is busy with other work.
    async with running_sender(pg_db, fake, max_in_flight=16, poll_interval=1.0):
        assert await until(lambda: len(fake.calls) >= n, timeout=30)
        assert await settled(pg_db)

    calls = fake.calls
    assert len(calls) == n
    elapsed = max(call.at for call in calls) - min(call.at for call in calls)
    per_second = max_per_window(calls, 1.0)
    print(f"\n{n} messages to {n} chats in {elapsed:.2f} s; at most {per_second} in 1 s")
    assert per_second <= 30
    assert elapsed <= 1.25 * n / 30
    assert sorted(call.params["chat_id"] for call in calls) == list(range(1, n + 1))


async def test_one_chat_gets_at_most_one_message_a_second(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    async with pg_db.uow_factory() as uow:
        for k in range(3):
            for chat in (1, 2):
                await enqueue(uow, BOT_ID, SendMessage(chat_id=chat, text=f"m{k}"))
    async with running_sender(pg_db, fake):
        assert await until(lambda: len(fake.calls) == 6, timeout=15)
        assert await settled(pg_db)

    gap = min_gap_per_chat(fake.calls)
    print(f"\nsmallest gap between two messages to one chat: {gap:.3f} s")
    assert gap >= 1.0
    for chat in (1, 2):
        assert sent_texts(fake, chat) == ["m0", "m1", "m2"]


async def test_a_429_pauses_only_the_chat_it_names(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    fake.fail(method="sendMessage", chat_id=500, status=429, retry_after=3, times=1)
    async with running_sender(pg_db, fake, private_chat_rate=20):
        async with pg_db.uow_factory() as uow:
            for k in range(3):
                await enqueue(uow, BOT_ID, SendMessage(chat_id=500, text=f"paused {k}"))
            for k in range(3):
                for chat in (501, 502):
                    await enqueue(uow, BOT_ID, SendMessage(chat_id=chat, text=f"free {k}"))
        assert await until(lambda: len(sent_texts(fake, 500)) == 4, timeout=15)
        assert await settled(pg_db)

    to_500 = [call for call in fake.calls if call.params.get("chat_id") == 500]
    others = [call for call in fake.calls if call.params.get("chat_id") in (501, 502)]
    refused = to_500[0]
    assert [call.params["text"] for call in to_500] == ["paused 0"] * 2 + ["paused 1", "paused 2"]
    pause = to_500[1].at - refused.at
    print(f"\nchat 500 paused {pause:.2f} s after its 429 (retry_after=3)")
    assert pause >= 3.0
    # The other chats went on meanwhile: all of theirs arrived during the pause.
    assert len(others) == 6
    assert all(call.at < to_500[1].at for call in others)
