"""``AppModel``, the abstract base of the app's tables, and the column types they share.

Every table of the app is named ``app__<table>``: ``AppModel`` gives the ``__plugin__``
and :class:`db_manager.Base` adds the prefix and checks the name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, func
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import MappedColumn, mapped_column
from sqlalchemy.types import TypeDecorator

from db_manager import Base

__all__ = ["AppModel", "UTCDateTime", "created_at_column", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware ``DateTime`` that reads back aware on every backend.

    PostgreSQL stores ``timestamptz`` and returns aware values; SQLite stores text and
    returns naive ones. Values are written in UTC and naive values read are taken as UTC
    (SQLite's ``CURRENT_TIMESTAMP`` is UTC), so callers always get aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def created_at_column() -> MappedColumn[datetime]:
    """A ``created_at`` column: set by Python on ORM inserts, by the server on other inserts."""
    return mapped_column(UTCDateTime(), default=utcnow, server_default=func.now(), nullable=False)


class AppModel(Base):
    """Abstract base of the app's models; their tables are named ``app__<__tablename__>``."""

    __abstract__ = True
    __plugin__ = "app"
