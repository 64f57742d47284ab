"""The outbox: Bot API calls commit or roll back with the handler's writes, and the sender
delivers committed ones in per-chat order, turning Telegram's answers into the row's fate.

Every assertion is on what a user would see: the calls the fake Bot API server received
(their order, their time), and the rows of ``db_manager__telegram_outbox``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiogram.methods import AnswerCallbackQuery, SendMessage, SendPhoto
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import func, select, update

from db_manager import Database, UnitOfWork
from db_manager.telegram.outbox import (
    Outbox,
    OutboxError,
    OutboxMessage,
    chat_of,
    enqueue,
    load_method,
    outbox_status,
    purge_sent,
    retry_dead,
)
from tests.integration.outbox_helpers import (
    BOT_ID,
    rows,
    running_sender,
    sent_texts,
    settled,
    started_database,
    until,
)
from tests.support.fake_bot_api import FakeBotApi
from tests.support.postgres import pg_settings, sqlite_settings
from tests.support.waiting import wait_for


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database[UnitOfWork]]:
    async with started_database(sqlite_settings(tmp_path / "outbox.sqlite3")) as database:
        yield database


# -- commit or roll back with the handler -----------------------------------------------------


@pytest.mark.postgres
async def test_a_rolled_back_unit_of_work_sends_nothing(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    async with running_sender(pg_db, fake) as sender:
        with pytest.raises(RuntimeError, match="handler failed"):
            async with pg_db.uow_factory() as uow:
                outbox = Outbox(uow, BOT_ID)
                await outbox.send(SendMessage(chat_id=1, text="first"))
                await outbox.send(SendMessage(chat_id=1, text="second"))
                raise RuntimeError("handler failed")
        # A later commit proves the sender is awake and has looked at the table since.
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=2, text="marker"))
        assert await until(lambda: sent_texts(fake) == ["marker"])
        await asyncio.sleep(0.3)  # several claim rounds more: still nothing of the rollback
        assert sender.in_flight == 0

    assert sent_texts(fake) == ["marker"]
    assert [row.payload["text"] for row in await rows(pg_db)] == ["marker"]


@pytest.mark.postgres
async def test_committed_messages_are_sent_in_order_and_only_after_the_commit(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    async with running_sender(pg_db, fake):
        async with pg_db.uow_factory() as uow:
            outbox = Outbox(uow, BOT_ID)
            await outbox.send(SendMessage(chat_id=7, text="one"))
            await outbox.send(SendMessage(chat_id=7, text="two"))
            await asyncio.sleep(0.5)  # the sender runs meanwhile; the rows are not committed
            assert fake.calls == []
            before_commit = time.monotonic()
        committed = time.monotonic()
        assert await until(lambda: len(sent_texts(fake)) == 2)
        assert await settled(pg_db)

    assert sent_texts(fake) == ["one", "two"]
    assert all(call.at >= before_commit for call in fake.calls)
    assert fake.calls[0].at - committed < 0.5  # woken by the commit, not by a poll
    assert [row.status for row in await rows(pg_db)] == ["sent", "sent"]


async def test_sqlite_commit_is_sent_and_a_rollback_is_not(
    sqlite_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    async with running_sender(sqlite_db, fake):
        with pytest.raises(RuntimeError):
            async with sqlite_db.uow_factory() as uow:
                await enqueue(uow, BOT_ID, SendMessage(chat_id=3, text="rolled back"))
                raise RuntimeError
        async with sqlite_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=3, text="a"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=3, text="b"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=-100, text="group"))
        assert await until(lambda: len(sent_texts(fake)) == 3)
        assert await settled(sqlite_db)

    assert sent_texts(fake, 3) == ["a", "b"]
    assert sent_texts(fake, -100) == ["group"]
    assert [row.status for row in await rows(sqlite_db)] == ["sent"] * 3


@pytest.mark.postgres
async def test_the_stored_call_is_what_the_bot_api_receives(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="yes")]]
    )
    method = SendMessage(chat_id=11, text="<b>hi</b>", parse_mode="HTML", reply_markup=markup)
    async with pg_db.uow_factory() as uow:
        await enqueue(uow, BOT_ID, method)
        await enqueue(uow, BOT_ID, AnswerCallbackQuery(callback_query_id="cq-1", text="ok"))
    stored = await rows(pg_db)
    assert [row.method for row in stored] == ["sendMessage", "answerCallbackQuery"]
    assert load_method(stored[0].method, stored[0].payload) == method
    assert (stored[0].chat_key, stored[0].chat_kind) == (11, "private")
    assert (stored[1].chat_key, stored[1].chat_kind) == (None, "unknown")

    async with running_sender(pg_db, fake):
        assert await until(lambda: len(fake.calls) == 2)
    by_method = {call.method: call.params for call in fake.calls}
    assert by_method["sendMessage"]["reply_markup"] == {
        "inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]
    }
    assert by_method["sendMessage"]["parse_mode"] == "HTML"
    assert by_method["answerCallbackQuery"]["callback_query_id"] == "cq-1"


@pytest.mark.postgres
async def test_a_file_upload_is_refused_with_a_clear_error(pg_db: Database[UnitOfWork]) -> None:
    photo = BufferedInputFile(b"\x89PNG", filename="a.png")
    async with pg_db.uow_factory() as uow:
        with pytest.raises(OutboxError, match="file_id"):
            await enqueue(uow, BOT_ID, SendPhoto(chat_id=1, photo=photo))
        await enqueue(uow, BOT_ID, SendPhoto(chat_id=1, photo="AgACAgIAAxkBAAIBfile-id"))
    assert [row.payload["photo"] for row in await rows(pg_db)] == ["AgACAgIAAxkBAAIBfile-id"]


# -- Telegram's answers ---------------------------------------------------------------------


@pytest.mark.postgres
async def test_403_makes_the_row_dead_calls_on_forbidden_and_is_never_retried(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    forbidden: list[tuple[int, str]] = []

    async def on_forbidden(chat_id: int, description: str) -> None:
        forbidden.append((chat_id, description))

    fake.fail(
        method="sendMessage",
        chat_id=40,
        status=403,
        description="Forbidden: bot was blocked by the user",
        times=10,
    )
    async with running_sender(pg_db, fake, on_forbidden=on_forbidden, private_chat_rate=50):
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=40, text="blocked"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=40, text="after the block"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=41, text="fine"))
        assert await settled(pg_db)
        assert await until(lambda: len(forbidden) == 2)
        await asyncio.sleep(0.5)  # retries, if any, would happen in this time (retry_max 0.2)

    calls_40 = [call for call in fake.calls if call.params.get("chat_id") == 40]
    assert len(calls_40) == 2  # each row tried once, never again
    assert forbidden == [(40, "Forbidden: bot was blocked by the user")] * 2
    stored = {row.payload["text"]: row for row in await rows(pg_db)}
    assert stored["blocked"].status == "dead"
    assert stored["blocked"].attempts == 1
    assert "blocked by the user" in (stored["blocked"].last_error or "")
    assert stored["fine"].status == "sent"


@pytest.mark.postgres
async def test_a_failing_on_forbidden_hook_is_logged_not_fatal(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    async def on_forbidden(chat_id: int, description: str) -> None:
        raise RuntimeError("the app's hook broke")

    fake.fail(method="sendMessage", chat_id=42, status=403, description="Forbidden: kicked")
    async with running_sender(pg_db, fake, on_forbidden=on_forbidden):
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=42, text="x"))
        assert await settled(pg_db)
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=43, text="still sending"))
        assert await until(lambda: "still sending" in sent_texts(fake))
    assert [row.status for row in await rows(pg_db)] == ["dead", "sent"]


@pytest.mark.postgres
async def test_400_makes_the_row_dead_with_telegrams_description(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    fake.fail(
        method="sendMessage",
        chat_id=50,
        status=400,
        description="Bad Request: message text is empty",
        times=10,
    )
    async with running_sender(pg_db, fake, private_chat_rate=50):
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=50, text="bad"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=50, text="next in the chat"))
        assert await settled(pg_db)
        await asyncio.sleep(0.5)

    assert len([call for call in fake.calls if call.params.get("chat_id") == 50]) == 2
    bad, following = await rows(pg_db)
    assert (bad.status, bad.attempts) == ("dead", 1)
    assert bad.last_error == "Bad Request: message text is empty"
    # A dead row does not hold its chat back.
    assert following.status == "dead"  # the fake refused it too (times=10)


@pytest.mark.postgres
@pytest.mark.parametrize("failure", ["500", "502", "drop"])
async def test_server_errors_and_network_errors_are_retried_until_success(
    pg_db: Database[UnitOfWork], fake: FakeBotApi, failure: str
) -> None:
    if failure == "drop":
        fake.drop(method="sendMessage", chat_id=60, times=3)
    else:
        fake.fail(method="sendMessage", chat_id=60, status=int(failure), times=3)
    async with running_sender(pg_db, fake, private_chat_rate=50):
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=60, text="eventually"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=60, text="after it"))
        assert await until(lambda: sent_texts(fake, 60)[-1:] == ["after it"])
        assert await settled(pg_db)

    calls = [call for call in fake.calls if call.params.get("chat_id") == 60]
    # Three failures, then the success, then the next row of the chat (never before it).
    assert [call.params["text"] for call in calls] == ["eventually"] * 4 + ["after it"]
    first, second = await rows(pg_db)
    assert (first.status, first.attempts) == ("sent", 4)
    assert (second.status, second.attempts) == ("sent", 1)


# -- operations -----------------------------------------------------------------------------


@pytest.mark.postgres
async def test_status_retry_dead_and_purge_sent(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    fake.fail(method="sendMessage", chat_id=70, status=400, description="Bad Request: x")
    async with running_sender(pg_db, fake):
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=70, text="dies once"))
            await enqueue(uow, BOT_ID, SendMessage(chat_id=71, text="sent"))
        assert await settled(pg_db)
        async with pg_db.uow_factory() as uow:
            status = await outbox_status(uow.session)
        assert status == {"pending": 0, "oldest_pending_age_seconds": None, "dead": 1, "sent": 1}

        async with pg_db.uow_factory() as uow:
            assert await retry_dead(uow.session) == 1
        assert await until(lambda: sent_texts(fake, 70) == ["dies once"])  # the 2nd attempt
        assert await settled(pg_db)

    async with pg_db.uow_factory() as uow:
        assert await purge_sent(uow.session, older_than=dt.timedelta(hours=1)) == 0
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        await uow.session.execute(update(OutboxMessage).values(sent_at=old))
        assert await purge_sent(uow.session, older_than=dt.timedelta(days=1)) == 2
    async with pg_db.uow_factory() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.postgres
async def test_status_reports_the_age_of_the_oldest_pending_row(
    pg_db: Database[UnitOfWork],
) -> None:
    async with pg_db.uow_factory() as uow:
        await enqueue(uow, BOT_ID, SendMessage(chat_id=1, text="waiting"))
    await asyncio.sleep(0.2)
    async with pg_db.uow_factory() as uow:
        status = await outbox_status(uow.session)
    assert status["pending"] == 1
    assert 0.2 <= status["oldest_pending_age_seconds"] < 5


# -- chats, pauses, stop, several senders ---------------------------------------------------


def test_the_chat_of_a_call_picks_its_limit() -> None:
    assert chat_of(42) == (42, "private")
    assert chat_of("42") == (42, "private")
    assert chat_of(-1001234567890) == (-1001234567890, "group")
    key, kind = chat_of("@SomeChannel")
    assert kind == "group" and chat_of("@somechannel") == (key, kind)  # stable, case-blind
    assert chat_of(None) == (None, "unknown")


@pytest.mark.postgres
async def test_a_429_without_a_chat_pauses_the_whole_bot(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    fake.fail(method="answerCallbackQuery", status=429, retry_after=2)
    async with running_sender(pg_db, fake):
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, AnswerCallbackQuery(callback_query_id="cq", text="x"))
        await fake.wait_calls(1, "answerCallbackQuery")

        # The fake records a call before it answers: wait until the sender has the 429
        # (the row's first attempt recorded; the pause is taken before that).
        async def refused_recorded() -> bool:
            return [row.attempts for row in await rows(pg_db)] == [1]

        assert await wait_for(refused_recorded, 10.0, interval=0.02)
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=90, text="after the pause"))
        assert await until(lambda: sent_texts(fake, 90) == ["after the pause"])
        assert await settled(pg_db)

    refused = fake.calls_of("answerCallbackQuery")[0]
    assert refused.status == 429
    assert fake.calls_of("sendMessage")[0].at - refused.at >= 2.0
    assert [call.status for call in fake.calls_of("answerCallbackQuery")] == [429, 200]


@pytest.mark.postgres
async def test_stop_cancels_a_send_past_the_deadline_and_the_row_stays_pending(
    pg_db: Database[UnitOfWork], fake: FakeBotApi
) -> None:
    fake.latency = 3.0
    runner = running_sender(pg_db, fake)
    sender = await runner.__aenter__()
    try:
        async with pg_db.uow_factory() as uow:
            await enqueue(uow, BOT_ID, SendMessage(chat_id=95, text="slow"))
        assert await until(lambda: sender.in_flight == 1)  # the fake answers in 3 s
        started = time.monotonic()
        await sender.stop(0.3)
        assert time.monotonic() - started < 2.0
    finally:
        await runner.__aexit__(None, None, None)
    assert [(row.status, row.attempts) for row in await rows(pg_db)] == [("pending", 0)]


@pytest.mark.postgres
async def test_two_senders_share_the_work_once_each_in_per_chat_order(
    pg_db: Database[UnitOfWork], pg_database: str, fake: FakeBotApi
) -> None:
    other = Database(pg_settings(pg_database))  # a second "process": its own engine and pool
    await other.start()
    chats, per_chat = 20, 10
    try:
        async with pg_db.uow_factory() as uow:
            for k in range(per_chat):
                for chat in range(1, chats + 1):
                    await enqueue(uow, BOT_ID, SendMessage(chat_id=chat, text=f"{chat}:{k}"))
        fast: dict[str, Any] = {"private_chat_rate": 1000.0, "bot_rate": 1000.0}
        async with running_sender(pg_db, fake, **fast), running_sender(other, fake, **fast):
            assert await until(lambda: len(fake.calls) >= chats * per_chat, timeout=30)
            assert await settled(pg_db)
    finally:
        await other.dispose()

    assert len(fake.calls) == chats * per_chat  # nothing sent twice
    for chat in range(1, chats + 1):
        assert sent_texts(fake, chat) == [f"{chat}:{k}" for k in range(per_chat)]
