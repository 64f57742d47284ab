"""``NovelState``: where one user is in the story, their story variables and premium flag."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, false, func
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import AppModel, UTCDateTime, utcnow

__all__ = ["SCENE_ID_MAX_LENGTH", "NovelState"]

SCENE_ID_MAX_LENGTH = 64


class NovelState(AppModel):
    __tablename__ = "novel_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app__users.id", ondelete="CASCADE"), unique=True
    )
    scene: Mapped[str] = mapped_column(String(SCENE_ID_MAX_LENGTH))
    # MutableDict: in-place changes (state.variables["x"] = 1) are noticed and saved.
    variables: Mapped[dict[str, Any]] = mapped_column(
        MutableDict.as_mutable(JSON()), default=dict, server_default="{}"
    )
    premium: Mapped[bool] = mapped_column(default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    def __repr__(self) -> str:
        return f"<NovelState user_id={self.user_id} scene={self.scene!r} premium={self.premium}>"
