"""Insert-once inside a SAVEPOINT: the portable way to let a unique constraint decide a race.

Two workers registering the same user (or recording the same payment) both see "not there
yet" and both insert; the database lets one win and gives the other an IntegrityError. In a
SAVEPOINT that error rolls back only the insert, so the losing transaction goes on and
reads the winner's row. Works the same on PostgreSQL and SQLite (no dialect-specific
``ON CONFLICT``), and the outer transaction and its other writes are kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["insert_once"]


async def insert_once(session: AsyncSession, insert: Callable[[], Awaitable[object]]) -> bool:
    """Run ``insert()`` (which must flush) in a SAVEPOINT; False if a constraint refused it."""
    try:
        async with session.begin_nested():
            await insert()
    except IntegrityError:
        return False
    return True
