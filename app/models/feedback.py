"""``Feedback``: what a reader wrote about the story, stored once they confirmed it.

Importing this module also registers db_manager's FSM table (``db_manager__telegram_fsm``):
the conversation that collects feedback keeps its state there, so the app's migrations and
``create_tables`` include it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

import db_manager.telegram.fsm  # noqa: F401  (the conversation's state table)
from app.models.base import AppModel, created_at_column

__all__ = ["FEEDBACK_MAX_LENGTH", "Feedback"]

FEEDBACK_MAX_LENGTH = 2000


class Feedback(AppModel):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Telegram id, not app__users.id: a reader may leave feedback before /start.
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    text: Mapped[str] = mapped_column(String(FEEDBACK_MAX_LENGTH))
    created_at: Mapped[datetime] = created_at_column()

    def __repr__(self) -> str:
        return f"<Feedback id={self.id} telegram_id={self.telegram_id}>"
