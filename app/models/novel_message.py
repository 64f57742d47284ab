"""``NovelMessage``: the log of story messages, in (the user's choice) and out (the scene)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import AppModel, created_at_column
from app.models.novel_state import SCENE_ID_MAX_LENGTH

__all__ = ["MessageDirection", "NovelMessage"]


class MessageDirection(enum.StrEnum):
    IN = "in"
    OUT = "out"


class NovelMessage(AppModel):
    __tablename__ = "novel_messages"
    __table_args__ = (CheckConstraint("direction IN ('in', 'out')", name="direction"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app__users.id", ondelete="CASCADE"), index=True
    )
    scene: Mapped[str] = mapped_column(String(SCENE_ID_MAX_LENGTH))
    direction: Mapped[str] = mapped_column(String(3))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()

    def __repr__(self) -> str:
        return f"<NovelMessage id={self.id} user_id={self.user_id} {self.direction} {self.scene!r}>"
