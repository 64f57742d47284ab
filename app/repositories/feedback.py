"""``FeedbackRepository``: store and list readers' feedback. Never commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.feedback import Feedback

__all__ = ["FeedbackRepository"]


class FeedbackRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, telegram_id: int, text: str) -> Feedback:
        feedback = Feedback(telegram_id=telegram_id, text=text)
        self.session.add(feedback)
        await self.session.flush()
        return feedback

    async def of_user(self, telegram_id: int) -> Sequence[Feedback]:
        rows = await self.session.scalars(
            select(Feedback).where(Feedback.telegram_id == telegram_id).order_by(Feedback.id)
        )
        return rows.all()
