"""What the inbox tests share: the inbox table's name, a handler that does nothing, and a
condition on the marks the scenario app's handlers commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.scenario_app import Run, count_marks

__all__ = ["INBOX", "marks_are", "noop"]

INBOX = "db_manager__telegram_inbox"


async def noop(run: Run) -> None:
    return None


async def marks_are(engine: AsyncEngine, kind: str, expected: int) -> bool:
    """True once exactly ``expected`` marks of ``kind`` are committed."""
    return await count_marks(engine, kind) == expected
