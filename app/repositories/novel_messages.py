"""``NovelMessageRepository``: queries on ``app__novel_messages``. Never commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import NovelMessage

__all__ = ["NovelMessageRepository"]


class NovelMessageRepository:
    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, message: NovelMessage) -> NovelMessage:
        """Add ``message``; it is written with the next flush or commit."""
        self.session.add(message)
        return message

    async def list_for_user(
        self, user_id: int, *, limit: int | None = None
    ) -> Sequence[NovelMessage]:
        """The user's messages in the order they were logged (the last ``limit`` if given)."""
        if limit is None:
            stmt = (
                select(NovelMessage)
                .where(NovelMessage.user_id == user_id)
                .order_by(NovelMessage.id)
            )
            return (await self.session.scalars(stmt)).all()
        stmt = (
            select(NovelMessage)
            .where(NovelMessage.user_id == user_id)
            .order_by(NovelMessage.id.desc())
            .limit(limit)
        )
        return list(reversed((await self.session.scalars(stmt)).all()))
