"""What every variant shares: the database target, the tables, the seed data, the payloads.

The tables are db_manager models (``bench__items``, ``bench__messages``) so the project
variant uses them idiomatically; every other variant uses the very same mapped classes or
table names, so each does the same work on the same rows.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import asyncpg
from sqlalchemy import URL, BigInteger, MetaData, String, Table, bindparam, select, text
from sqlalchemy.orm import Mapped, mapped_column

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings
from db_manager.telegram.store import TelegramUpdate

ROWS = 1000
BOT_TOKEN = "123456789:AAbenchmarkbenchmarkbenchmarkbenchmark"
BOT_ID = 123456789
WEBHOOK_SECRET = "bench-secret-token"
WEBHOOK_PATH = "/webhook/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class BenchModel(Base):
    __abstract__ = True
    __plugin__ = "bench"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(BenchModel):
    __tablename__ = "items"  # bench__items

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50))
    counter: Mapped[int]


class Message(BenchModel):
    """The row the webhook handler writes."""

    __tablename__ = "messages"  # bench__messages

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(String(200))


ITEMS = cast(Table, Item.__table__)
# The Core read of the read path, built once: SQLAlchemy's compiled cache does the rest.
ITEM_BY_ID = select(ITEMS.c.id, ITEMS.c.name, ITEMS.c.counter).where(ITEMS.c.id == bindparam("id"))
SELECT_1 = text("SELECT 1")
UPDATES_TABLE = cast(Table, TelegramUpdate.__table__)


@dataclass(frozen=True)
class Target:
    """Where the variants connect, and the pool every variant gets."""

    host: str = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
    port: int = int(os.environ.get("BENCH_PG_PORT", "5432"))
    user: str = os.environ.get("BENCH_PG_USER", "postgres")
    admin_database: str = os.environ.get("BENCH_PG_DATABASE", "test")
    database: str = ""
    pool_size: int = 10
    # Non-empty: every variant uses this SQLite file (WAL) instead of PostgreSQL.
    sqlite_path: str = ""

    @property
    def backend(self) -> str:
        return "sqlite" if self.sqlite_path else "postgresql"

    def with_port(self, port: int) -> Target:
        return replace(self, port=port)

    def url(self) -> URL:
        if self.sqlite_path:
            return URL.create("sqlite+aiosqlite", database=self.sqlite_path)
        return URL.create(
            "postgresql+asyncpg",
            username=self.user,
            host=self.host,
            port=self.port,
            database=self.database,
        )

    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def settings(self, **overrides: Any) -> DatabaseSettings:
        server: dict[str, Any] = {
            "driver": "postgresql+asyncpg",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "database": self.database,
        }
        if self.sqlite_path:
            server = {"driver": "sqlite+aiosqlite", "database": self.sqlite_path}
        values: dict[str, Any] = {
            **server,
            "pool_size": self.pool_size,
            "max_overflow": 0,
            # Same pool behaviour as the hand-written baseline: no pre-ping (see docs).
            "pool_pre_ping": False,
            "create_tables": False,
        }
        values.update(overrides)
        return DatabaseSettings(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: str) -> Target:
        return cls(**json.loads(data))


@asynccontextmanager
async def bench_database(target: Target) -> AsyncIterator[Target]:
    """A fresh database with the tables and 1000 items; dropped afterwards."""
    name = f"dbm_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(
        host=target.host, port=target.port, user=target.user, database=target.admin_database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    created = replace(target, database=name)
    try:
        await create_schema(created)
        yield created
    finally:
        admin = await asyncpg.connect(
            host=target.host, port=target.port, user=target.user, database=target.admin_database
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def bench_sqlite_database(target: Target) -> AsyncIterator[Target]:
    """A fresh SQLite file in WAL mode with the tables and 1000 items; deleted afterwards.

    WAL is a property of the file (it persists), so every variant, the hand-written baseline
    with aiosqlite's default setup included, runs on a WAL database.
    """
    with tempfile.TemporaryDirectory(prefix="dbm_bench_") as directory:
        created = replace(target, sqlite_path=str(Path(directory) / "bench.sqlite3"))
        await create_schema(created)
        yield created


async def create_schema(target: Target) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(target.url())
    try:
        if target.sqlite_path:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with engine.begin() as conn:
            await conn.run_sync(BenchModel.metadata.create_all)
            await conn.run_sync(Base.metadata.create_all, tables=[UPDATES_TABLE])
            await conn.execute(
                ITEMS.insert(),
                [{"id": i, "name": f"item {i}", "counter": 0} for i in range(1, ROWS + 1)],
            )
    finally:
        await engine.dispose()


def item_json(item_id: int, name: str, counter: int) -> dict[str, Any]:
    return {"id": item_id, "name": name, "counter": counter}


def update_body(update_id: int) -> bytes:
    """A Telegram ``message`` update, as the Bot API posts it."""
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id % 1_000_000 + 1,
                "date": 1_764_000_000,
                "chat": {"id": 4242, "type": "private", "first_name": "Bench"},
                "from": {"id": 4242, "is_bot": False, "first_name": "Bench"},
                "text": "hello from the benchmark",
            },
        },
        separators=(",", ":"),
    ).encode()
