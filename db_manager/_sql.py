"""Small helpers the library's own tables share (the idempotency, update, inbox and outbox
records)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["dialect_of", "utcnow"]


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC: the value every timestamp column of the library stores."""
    return dt.datetime.now(dt.UTC)


def dialect_of(session: AsyncSession) -> str:
    """The dialect name (``"postgresql"``, ``"sqlite"``) of the connection ``session`` uses."""
    return session.get_bind().dialect.name
