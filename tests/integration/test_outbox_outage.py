"""A database outage while the sender works: rows stay pending, the sender backs off and
goes on when the database is back, and nothing is marked sent that Telegram did not accept
(a call answered while the database was gone is sent again: at least once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiogram.methods import SendMessage

from db_manager import Database
from db_manager.telegram.outbox import enqueue
from tests.integration.outbox_helpers import (
    BOT_ID,
    rows,
    running_sender,
    started_database,
    until,
)
from tests.support.fake_bot_api import FakeBotApi
from tests.support.postgres import PG_HOST, PG_PORT, pg_settings
from tests.support.proxy import TcpProxy
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async with TcpProxy(PG_HOST, PG_PORT) as tcp:
        await tcp.forward()
        yield tcp


async def test_the_sender_rides_out_a_database_outage(
    pg_database: str, proxy: TcpProxy, fake: FakeBotApi
) -> None:
    # The sender reaches the database through the proxy; the test looks at it directly.
    through_proxy = Database(pg_settings(pg_database, port=proxy.port, connect_timeout=1.0))
    async with started_database(pg_settings(pg_database)) as direct:
        await through_proxy.start()
        try:
            async with running_sender(through_proxy, fake) as sender:
                fake.latency = 0.5  # the call is in flight when the database goes away
                async with direct.uow_factory() as uow:
                    await enqueue(uow, BOT_ID, SendMessage(chat_id=1, text="answered during it"))
                # The fake records a call once it answers: cut the database as soon as the
                # row is claimed, so the answer comes back during the outage.
                assert await until(lambda: sender.in_flight == 1)
                await proxy.refuse()  # every connection cut, new ones refused
                await fake.wait_calls(1, "sendMessage")
                fake.latency = 0.0
                async with direct.uow_factory() as uow:
                    await enqueue(uow, BOT_ID, SendMessage(chat_id=2, text="enqueued during it"))
                await asyncio.sleep(1.5)  # claims fail meanwhile; the sender backs off
                assert sender.running
                assert [row.status for row in await rows(direct)] == ["pending", "pending"]
                assert fake.sent_texts(2) == []

                await proxy.forward()

                async def all_sent() -> bool:
                    return [row.status for row in await rows(direct)] == ["sent", "sent"]

                assert await wait_for(all_sent, timeout=20, interval=0.1)
                assert await until(lambda: fake.sent_texts(2) == ["enqueued during it"])
        finally:
            await through_proxy.dispose()

    # Accepted once while its mark could not commit, so sent again: at least once.
    assert fake.sent_texts(1) == ["answered during it"] * 2
