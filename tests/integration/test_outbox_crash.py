"""A sender killed mid-delivery (SIGKILL) loses nothing: a new process sends every message
still pending, and only calls that were in flight at the kill are sent twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiogram.methods import SendMessage
from sqlalchemy import func, select

from db_manager import Database, UnitOfWork
from db_manager.telegram.outbox import OutboxMessage, enqueue
from tests.integration.outbox_helpers import BOT_ID
from tests.support.fake_bot_api import FakeBotApi
from tests.support.processes import REPO_ROOT, child_env
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.postgres]

CHATS = 100
PER_CHAT = 5
IN_FLIGHT = 8
CHILD = "tests.integration.outbox_child"


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    # A little latency per call, so that several calls are in flight when the kill comes.
    with FakeBotApi(latency=0.01) as server:
        yield server


async def start_child(database: str, fake: FakeBotApi, log: Path) -> subprocess.Popen[bytes]:
    """A sender process; its output goes to ``log`` (a pipe nobody reads could fill up)."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            [
                *(sys.executable, "-u", "-m", CHILD, "--database", database),
                *("--api-server", fake.base_url, "--in-flight", str(IN_FLIGHT)),
            ],
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    async def ready() -> bool:
        return child.poll() is not None or b"ready\n" in log.read_bytes()

    await wait_for(ready, timeout=90)  # an interpreter start on a busy machine can take long
    if child.poll() is not None or b"ready\n" not in log.read_bytes():
        stop(child, signal.SIGKILL)
        raise AssertionError(f"the sender process did not start: {log.read_text()[-2000:]}")
    return child


def stop(child: subprocess.Popen[bytes], how: signal.Signals) -> None:
    if child.poll() is None:
        child.send_signal(how)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def sent_rows(database: Database[UnitOfWork]) -> int:
    async with database.uow_factory() as uow:
        count = await uow.session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent")
        )
    return int(count or 0)


async def test_a_killed_sender_loses_nothing_and_duplicates_only_what_was_in_flight(
    pg_db: Database[UnitOfWork], pg_database: str, fake: FakeBotApi, tmp_path: Path
) -> None:
    total = CHATS * PER_CHAT
    async with pg_db.uow_factory() as uow:
        for k in range(PER_CHAT):
            for chat in range(1, CHATS + 1):
                await enqueue(uow, BOT_ID, SendMessage(chat_id=chat, text=f"{chat}:{k}"))

    first = await start_child(pg_database, fake, tmp_path / "first.log")
    try:
        assert await wait_for(lambda: _delivered_at_least(fake, 200), timeout=30, interval=0.005)
    finally:
        stop(first, signal.SIGKILL)
    await asyncio.sleep(0.3)  # calls that reached the fake just before the kill are recorded
    delivered_at_kill = len(fake.delivered("sendMessage"))
    recorded_at_kill = await sent_rows(pg_db)
    in_flight_at_kill = delivered_at_kill - recorded_at_kill
    assert 200 <= delivered_at_kill < total, "the kill did not come mid-delivery"

    second = await start_child(pg_database, fake, tmp_path / "second.log")
    try:

        async def all_sent() -> bool:
            return await sent_rows(pg_db) == total

        started = time.monotonic()
        assert await wait_for(all_sent, timeout=40, interval=0.05)
        finished = time.monotonic() - started
    finally:
        stop(second, signal.SIGTERM)

    texts = [call.params["text"] for call in fake.delivered("sendMessage")]
    duplicates = len(texts) - len(set(texts))
    print(
        f"\n{total} messages; killed after {delivered_at_kill} deliveries with "
        f"{recorded_at_kill} recorded: {in_flight_at_kill} answered but not committed; "
        f"{duplicates} duplicates; the new process finished in {finished:.2f} s"
    )
    expected = {f"{chat}:{k}" for chat in range(1, CHATS + 1) for k in range(PER_CHAT)}
    assert set(texts) == expected  # every message delivered at least once
    assert duplicates <= in_flight_at_kill <= IN_FLIGHT
    for chat in range(1, CHATS + 1):  # per-chat order holds across the crash
        firsts = list(dict.fromkeys(fake.sent_texts(chat)))
        assert firsts == [f"{chat}:{k}" for k in range(PER_CHAT)]


async def _delivered_at_least(fake: FakeBotApi, n: int) -> bool:
    return len(fake.delivered("sendMessage")) >= n
