"""``ReferralLink``: the one referral code of a user and how often it brought someone in."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import AppModel

__all__ = ["REFERRAL_CODE_MAX_LENGTH", "ReferralLink"]

# Telegram's deep-link ``start`` parameter allows up to 64 characters of [A-Za-z0-9_-].
REFERRAL_CODE_MAX_LENGTH = 64


class ReferralLink(AppModel):
    __tablename__ = "referral_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("app__users.id", ondelete="CASCADE"), unique=True
    )
    code: Mapped[str] = mapped_column(String(REFERRAL_CODE_MAX_LENGTH), unique=True)
    uses: Mapped[int] = mapped_column(default=0, server_default=text("0"))

    def __repr__(self) -> str:
        return f"<ReferralLink owner_id={self.owner_id} code={self.code!r} uses={self.uses}>"
