"""Exactly-once processing of Telegram updates: db_manager's own ``telegram_updates`` table.

Each update whose handling uses the database records ``(bot_id, update_id)`` in the same
transaction as the handler's writes, at the moment that transaction begins. A second
delivery of an update that was already committed finds the row and stops with
:class:`DuplicateUpdate` before the handler's first statement runs; two deliveries racing on
two workers serialize on the primary key (``INSERT ... ON CONFLICT DO NOTHING`` waits for the
first to commit or roll back), so exactly one applies. If the handler fails, the row rolls
back with its writes and Telegram's retry is applied normally.

Framework-free (SQLAlchemy only): the aiogram middleware wires it in with
:meth:`UnitOfWork.on_begin`. Importing this module adds ``db_manager__telegram_updates`` to
``db_manager.Base.metadata``; an app that never imports the Telegram subpackage never sees it
in ``create_all`` or in Alembic's autogenerate.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, DateTime, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Executable

from db_manager._sql import utcnow
from db_manager.base import Base
from db_manager.errors import DatabaseManagerError
from db_manager.uow import BeginHook, UnitOfWork

__all__ = [
    "DuplicateUpdate",
    "TelegramUpdate",
    "UpdateRecord",
    "deduplicate_update",
    "prune_updates",
]


class DuplicateUpdate(DatabaseManagerError):
    """This update was already applied; its handler must not run again."""

    def __init__(self, bot_id: int, update_id: int) -> None:
        super().__init__(f"update {update_id} of bot {bot_id} was already processed")
        self.bot_id = bot_id
        self.update_id = update_id


class TelegramUpdate(Base):
    """One row per processed update. Prune rows older than a few days."""

    __tablename__ = "db_manager__telegram_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


def _insert_ignoring_duplicates(connection: Connection, bot_id: int, update_id: int) -> bool:
    values: dict[str, Any] = {"bot_id": bot_id, "update_id": update_id, "received_at": utcnow()}
    stmt: Executable
    if connection.dialect.name == "postgresql":
        stmt = _PG_INSERT
    elif connection.dialect.name == "sqlite":
        stmt = _SQLITE_INSERT
    else:  # pragma: no cover - only the two supported dialects are configured
        raise DatabaseManagerError(
            f"update deduplication is not supported on {connection.dialect.name}"
        )
    return bool(connection.execute(stmt, values).rowcount == 1)


# Built once, with bound parameters: each update only executes them (SQLAlchemy's compiled
# cache does the rest) instead of building and cache-keying a new statement every time.
_COLUMNS = (TelegramUpdate.bot_id, TelegramUpdate.update_id, TelegramUpdate.received_at)
_VALUES = {column.key: bindparam(column.key, type_=column.type) for column in _COLUMNS}
_PG_INSERT = postgresql.insert(TelegramUpdate).values(_VALUES).on_conflict_do_nothing()
_SQLITE_INSERT = sqlite.insert(TelegramUpdate).values(_VALUES).on_conflict_do_nothing()


def deduplicate_update(uow: UnitOfWork, bot_id: int, update_id: int) -> UpdateRecord:
    """Record the update in ``uow``'s transaction when it begins; raise DuplicateUpdate if it
    was already recorded by a committed transaction.

    The returned record's ``duplicate`` flag stays set even if a handler swallows the error,
    so the caller can still refuse to commit.
    """
    record = UpdateRecord(bot_id, update_id)
    hook: BeginHook = record
    uow.on_begin(hook)
    return record


class UpdateRecord:
    """The begin hook that records one update; ``duplicate`` tells whether it was seen before."""

    __slots__ = ("bot_id", "duplicate", "update_id")

    def __init__(self, bot_id: int, update_id: int) -> None:
        self.bot_id = bot_id
        self.update_id = update_id
        self.duplicate = False

    def __call__(self, connection: Connection) -> None:
        if not _insert_ignoring_duplicates(connection, self.bot_id, self.update_id):
            self.duplicate = True
            raise DuplicateUpdate(self.bot_id, self.update_id)


async def prune_updates(uow: UnitOfWork, *, older_than: dt.timedelta = dt.timedelta(days=3)) -> int:
    """Delete records older than ``older_than``; return how many were deleted."""
    cutoff = utcnow() - older_than
    result = await uow.session.execute(
        delete(TelegramUpdate).where(TelegramUpdate.received_at < cutoff)
    )
    return int(getattr(result, "rowcount", 0) or 0)
