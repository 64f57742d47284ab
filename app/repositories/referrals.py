"""``ReferralRepository``: queries on ``app__referral_links``. Never commits."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.models import ReferralLink

__all__ = ["ReferralRepository"]


class ReferralRepository:
    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_code(self, code: str) -> ReferralLink | None:
        result = await self.session.execute(select(ReferralLink).where(ReferralLink.code == code))
        return result.scalar_one_or_none()

    async def get_by_owner(self, owner_id: int) -> ReferralLink | None:
        stmt = select(ReferralLink).where(ReferralLink.owner_id == owner_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, link: ReferralLink) -> ReferralLink:
        """Add ``link`` and flush (a duplicate owner or code raises IntegrityError here)."""
        self.session.add(link)
        await self.session.flush()
        return link

    async def increment_uses(self, link: ReferralLink) -> None:
        """``uses = uses + 1`` in the database (safe against concurrent increments)."""
        stmt = (
            update(ReferralLink)
            .where(ReferralLink.id == link.id)
            .values(uses=ReferralLink.uses + 1)
            .returning(ReferralLink.uses)
            .execution_options(synchronize_session=False)
        )
        uses = (await self.session.execute(stmt)).scalar_one()
        # Tell the identity map the new value without marking the object dirty.
        set_committed_value(link, "uses", uses)
