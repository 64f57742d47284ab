"""``NovelStateRepository``: queries on ``app__novel_states``. Never commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import NovelState

__all__ = ["NovelStateRepository"]


class NovelStateRepository:
    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_user(self, user_id: int, *, for_update: bool = False) -> NovelState | None:
        """The user's state; ``for_update`` locks the row (and reloads it) until the commit,
        so two concurrent choices of one user are applied one after the other."""
        stmt = select(NovelState).where(NovelState.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, state: NovelState) -> NovelState:
        """Add ``state`` and flush (a second state for one user raises IntegrityError here)."""
        self.session.add(state)
        await self.session.flush()
        return state
