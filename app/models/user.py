"""``User``: one Telegram user of the bot, who referred them, and whether the bot can reach them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import AppModel, UTCDateTime, created_at_column

__all__ = ["User"]


class User(AppModel):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Telegram ids exceed 2**31; BigInteger on every backend.
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(256))
    last_name: Mapped[str | None] = mapped_column(String(256))
    language_code: Mapped[str | None] = mapped_column(String(35))
    created_at: Mapped[datetime] = created_at_column()
    referrer_id: Mapped[int | None] = mapped_column(
        ForeignKey("app__users.id", ondelete="SET NULL"), index=True
    )
    # When the bot learnt it cannot write to the user (they blocked it: a ``my_chat_member``
    # update "kicked", or a 403 from the Bot API); None: reachable. Broadcasts skip them.
    unreachable_since: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def reachable(self) -> bool:
        return self.unreachable_since is None

    def __repr__(self) -> str:
        return f"<User id={self.id} telegram_id={self.telegram_id}>"
