"""The transactional outbox: Bot API calls enqueued in a handler's transaction, sent after it.

::

    @router.message(CommandStart())
    async def start(message: Message, uow: UnitOfWork, outbox: Outbox) -> None:
        uow.session.add(Visit(user_id=message.from_user.id))
        await outbox.send(SendMessage(chat_id=message.chat.id, text="welcome"))
        # committed with the visit; rolled back with it, and then never sent

    sender = OutboxSender(bot, database.engine, settings)  # db_manager.telegram.sender
    await sender.start()

A call sent directly from a handler happens even if the handler's transaction rolls back;
one sent from an ``on_commit`` callback is lost if the process dies or the Bot API is down
for a moment. :meth:`Outbox.send` instead adds a row to ``db_manager__telegram_outbox``
through the unit of work's session (one INSERT), so the call commits or rolls back with the
handler's writes. :class:`~db_manager.telegram.sender.OutboxSender` delivers committed
rows: in order per chat, within Telegram's flood limits, retrying what can be retried (see
that module).

**Delivery is at least once, not exactly once.** A row is marked sent in a transaction
that commits after Telegram accepted the call; if the process dies, or the database
connection breaks, between Telegram's answer and that COMMIT (a few milliseconds per
message), the row is still pending and is sent again. A crash duplicates at most the calls
in flight at that moment (``max_in_flight``). Make calls whose repetition would hurt
idempotent on the receiving side, or accept the rare duplicate.

Files are not stored: a method carrying an ``InputFile`` (``BufferedInputFile``,
``FSInputFile``, ``URLInputFile``) is refused with :class:`OutboxError`; pass a ``file_id``
or a URL string. Importing this module adds ``db_manager__telegram_outbox`` to
``db_manager.Base.metadata``. aiogram and SQLAlchemy only.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

import structlog
from aiogram import methods as aiogram_methods
from aiogram.client.default import Default
from aiogram.methods import TelegramMethod
from aiogram.types import InputFile, TelegramObject
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from db_manager._sql import dialect_of, utcnow
from db_manager.base import Base
from db_manager.errors import DatabaseManagerError
from db_manager.notify import Wakeup
from db_manager.uow import UnitOfWork

__all__ = [
    "CHANNEL",
    "Outbox",
    "OutboxError",
    "OutboxMessage",
    "chat_of",
    "enqueue",
    "load_method",
    "outbox_status",
    "purge_sent",
    "retry_dead",
]

log = structlog.get_logger("db_manager.telegram.outbox")

CHANNEL: Final = "db_manager_outbox"  # the NOTIFY channel senders LISTEN on

OnForbidden = Callable[[int, str], Awaitable[None]]


class OutboxError(DatabaseManagerError):
    """A Bot API call that cannot be stored in the outbox (it carries a file upload)."""


class Status(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class ChatKind(enum.StrEnum):
    PRIVATE = "private"
    GROUP = "group"  # groups, supergroups and channels (negative ids, ``@username``)
    UNKNOWN = "unknown"  # no chat (answerCallbackQuery, inline messages): bot limit only


_PENDING = text("status = 'pending'")


class OutboxMessage(Base):
    """One Bot API call; ``id`` is the enqueue order. Purge sent rows with :func:`purge_sent`."""

    __tablename__ = "db_manager__telegram_outbox"

    # Plain INTEGER on SQLite: only an INTEGER PRIMARY KEY is its rowid (autoincrementing).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    bot_id: Mapped[int] = mapped_column(BigInteger)
    chat_key: Mapped[int | None] = mapped_column(BigInteger)
    chat_kind: Mapped[str] = mapped_column(String(8))
    method: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSON().with_variant(postgresql.JSONB(), "postgresql")
    )
    status: Mapped[str] = mapped_column(String(8), default=Status.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The queue in order, and a chat's earlier rows (the per-chat order check).
        Index(
            "ix_db_manager__telegram_outbox_pending",
            "bot_id",
            "id",
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
        Index(
            "ix_db_manager__telegram_outbox_pending_chat",
            "bot_id",
            "chat_key",
            "id",
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
        Index(
            "ix_db_manager__telegram_outbox_dead",
            "id",
            postgresql_where=text("status = 'dead'"),
            sqlite_where=text("status = 'dead'"),
        ),
    )


_TABLE = cast(Table, OutboxMessage.__table__)
_C = _TABLE.c


# -- enqueue ----------------------------------------------------------------------------------


def _bound(*names: str) -> dict[str, Any]:
    return {name: bindparam(name, type_=_C[name].type) for name in names}


_INSERT_COLUMNS = ("bot_id", "chat_key", "chat_kind", "method", "payload", "next_attempt_at")
# Built once (SQLAlchemy's compiled cache does the rest). On PostgreSQL the INSERT notifies
# the senders of every process itself (RETURNING runs pg_notify; PostgreSQL delivers one
# notification per channel at COMMIT, none after a rollback): no second statement.
_INSERT = insert(_TABLE).values(
    **_bound(*_INSERT_COLUMNS),
    status=Status.PENDING.value,
    attempts=0,
    created_at=bindparam("next_attempt_at", type_=_C.created_at.type),
)
_INSERT_NOTIFY = _INSERT.returning(func.pg_notify(literal(CHANNEL), literal("")))

# The senders running in this process, by bot id: rung after a local commit that enqueued.
_local_wakeups: dict[int, list[Wakeup]] = {}


def _ring_local(bot_id: int) -> None:
    for wakeup in _local_wakeups.get(bot_id, ()):
        wakeup.ring()


class Outbox:
    """Enqueue Bot API calls of ``bot_id`` in ``uow``'s transaction (handler data ``"outbox"``)."""

    __slots__ = ("bot_id", "uow")

    def __init__(self, uow: UnitOfWork, bot_id: int) -> None:
        self.uow = uow
        self.bot_id = bot_id

    def __repr__(self) -> str:
        return f"<Outbox bot_id={self.bot_id}>"

    async def send(self, method: TelegramMethod[Any]) -> None:
        """Store ``method``; it is sent after the unit of work commits, never if it rolls back.

        Raises :class:`OutboxError` for a method that uploads a file.
        """
        await enqueue(self.uow, self.bot_id, method)


async def enqueue(uow: UnitOfWork, bot_id: int, method: TelegramMethod[Any]) -> None:
    """The function form of :meth:`Outbox.send`."""
    values = _row_values(bot_id, method)
    session = uow.session
    stmt = _INSERT_NOTIFY if dialect_of(session) == "postgresql" else _INSERT
    await session.execute(stmt, values)
    uow.on_commit(functools.partial(_ring_local, bot_id))


def _row_values(bot_id: int, method: TelegramMethod[Any]) -> dict[str, Any]:
    name = method.__api_method__
    payload: dict[str, Any] = {}
    for key, value in method.model_dump(warnings=False).items():
        prepared = _prepare(value, name, key)
        if prepared is not None:
            payload[key] = prepared
    chat_key, chat_kind = chat_of(payload.get("chat_id"))
    return {
        "bot_id": bot_id,
        "chat_key": chat_key,
        "chat_kind": chat_kind,
        "method": name,
        "payload": payload,
        "next_attempt_at": utcnow(),
    }


def _prepare(value: Any, method: str, key: str) -> Any:
    """``value`` as the Bot API expects it in JSON (aiogram's ``prepare_value``), without a Bot:
    a bot default (``Default(...)``) is left out, so the sending bot's default applies."""
    if value is None or isinstance(value, Default):
        return None
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, InputFile):
        raise OutboxError(
            f"{method}.{key}: the outbox stores no file uploads ({type(value).__name__}); "
            "upload it once outside the outbox and enqueue its file_id, or pass a URL string"
        )
    if isinstance(value, dict):
        return {
            k: prepared
            for k, item in value.items()
            if (prepared := _prepare(item, method, k)) is not None
        }
    if isinstance(value, list | tuple):
        return [prepared for item in value if (prepared := _prepare(item, method, key)) is not None]
    if isinstance(value, dt.timedelta):
        return round((dt.datetime.now() + value).timestamp())
    if isinstance(value, dt.datetime):
        return round(value.timestamp())
    if isinstance(value, enum.Enum):
        return _prepare(value.value, method, key)
    if isinstance(value, TelegramObject):
        return _prepare(value.model_dump(warnings=False), method, key)
    return value


def chat_of(chat_id: object) -> tuple[int | None, str]:
    """The ``(chat_key, chat_kind)`` of a ``chat_id``: private for a positive id, group for a
    negative one or an ``@channelusername`` (keyed by a stable 63-bit hash of the name)."""
    if isinstance(chat_id, str):
        name = chat_id
        try:
            chat_id = int(name)
        except ValueError:
            digest = hashlib.blake2b(name.lower().encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big", signed=True), ChatKind.GROUP.value
    if isinstance(chat_id, int) and not isinstance(chat_id, bool):
        return chat_id, (ChatKind.PRIVATE if chat_id > 0 else ChatKind.GROUP).value
    return None, ChatKind.UNKNOWN.value


@functools.cache
def _method_classes() -> dict[str, type[TelegramMethod[Any]]]:
    classes: dict[str, type[TelegramMethod[Any]]] = {}
    for name in aiogram_methods.__all__:
        candidate = getattr(aiogram_methods, name, None)
        if isinstance(candidate, type) and issubclass(candidate, TelegramMethod):
            api_name = getattr(candidate, "__api_method__", None)
            if isinstance(api_name, str):
                classes[api_name] = candidate
    return classes


def load_method(name: str, payload: dict[str, Any]) -> TelegramMethod[Any]:
    """The aiogram method object of a stored row (``aiogram.methods`` by ``__api_method__``)."""
    cls = _method_classes().get(name)
    if cls is None:
        raise OutboxError(f"{name!r} is not a Bot API method this aiogram version knows")
    return cls.model_validate(payload)


# -- operations -------------------------------------------------------------------------------


async def outbox_status(session: AsyncSession | AsyncConnection) -> dict[str, Any]:
    """Counts for monitoring: ``pending``, ``oldest_pending_age_seconds`` (None if none),
    ``dead`` and ``sent`` (all bots)."""
    rows = (await session.execute(select(_C.status, func.count()).group_by(_C.status))).all()
    counts = {str(status): int(count) for status, count in rows}
    oldest = await session.scalar(
        select(func.min(_C.created_at)).where(_C.status == Status.PENDING.value)
    )
    age: float | None = None
    if oldest is not None:
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        age = max(0.0, (utcnow() - oldest).total_seconds())
    return {
        "pending": counts.get(Status.PENDING.value, 0),
        "oldest_pending_age_seconds": age,
        "dead": counts.get(Status.DEAD.value, 0),
        "sent": counts.get(Status.SENT.value, 0),
    }


async def retry_dead(
    session: AsyncSession | AsyncConnection, ids: Iterable[int] | None = None
) -> int:
    """Make dead rows (all, or those of ``ids``) pending again, due now; return how many.
    Commit the session to apply it."""
    stmt = (
        update(_TABLE)
        .where(_C.status == Status.DEAD.value)
        .values(status=Status.PENDING.value, next_attempt_at=utcnow(), attempts=0)
    )
    if ids is not None:
        stmt = stmt.where(_C.id.in_(list(ids)))
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_sent(
    session: AsyncSession | AsyncConnection, older_than: dt.timedelta = dt.timedelta(days=1)
) -> int:
    """Delete sent rows older than ``older_than``; return how many. Commit to apply it."""
    cutoff = utcnow() - older_than
    result = await session.execute(
        delete(_TABLE).where(_C.status == Status.SENT.value, _C.sent_at < cutoff)
    )
    return int(getattr(result, "rowcount", 0) or 0)
