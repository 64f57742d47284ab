"""``UserRepository``: queries on ``app__users``. Never commits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import NovelState, ReferralLink, User

__all__ = ["UserOverview", "UserRepository"]


class UserOverview(NamedTuple):
    """A user with what the profile page shows about them, read in one query."""

    user: User
    referrer_telegram_id: int | None
    referral_code: str | None
    referral_count: int
    scene: str | None
    premium: bool


# Referral chains are short; the bound only keeps a corrupt (cyclic) chain from looping.
_MAX_CHAIN_DEPTH = 1000


class UserRepository:
    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_telegram_id(self, telegram_id: int) -> User | None:
        result = await self.session.execute(select(User).where(User.telegram_id == telegram_id))
        return result.scalar_one_or_none()

    async def get_overview(self, telegram_id: int) -> UserOverview | None:
        """The user with their referrer's Telegram id, link code, referral count and story
        state, in one round trip; None if there is no such user."""
        referrer = User.__table__.alias("referrer")
        referred = User.__table__.alias("referred")
        referral_count = (
            select(func.count())
            .select_from(referred)
            .where(referred.c.referrer_id == User.id)
            .scalar_subquery()
        )
        stmt = (
            select(
                User,
                referrer.c.telegram_id,
                ReferralLink.code,
                referral_count,
                NovelState.scene,
                NovelState.premium,
            )
            .outerjoin(referrer, referrer.c.id == User.referrer_id)
            .outerjoin(ReferralLink, ReferralLink.owner_id == User.id)
            .outerjoin(NovelState, NovelState.user_id == User.id)
            .where(User.telegram_id == telegram_id)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        if row is None:
            return None
        user, referrer_telegram_id, code, count, scene, premium = row
        return UserOverview(user, referrer_telegram_id, code, int(count), scene, bool(premium))

    async def add(self, user: User) -> User:
        """Add ``user`` and flush, so it has its ``id`` (an IntegrityError surfaces here)."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def lock(self, *user_ids: int) -> Sequence[User]:
        """Lock the rows (``FOR UPDATE`` in id order, so two callers never deadlock) and
        refresh the loaded objects from them. SQLite serializes writers and ignores the lock."""
        stmt = (
            select(User)
            .where(User.id.in_(sorted(set(user_ids))))
            .order_by(User.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).all()

    async def count(self) -> int:
        return await self.session.scalar(select(func.count()).select_from(User)) or 0

    async def count_referrals(self, user_id: int) -> int:
        """How many users ``user_id`` referred."""
        stmt = select(func.count()).select_from(User).where(User.referrer_id == user_id)
        return await self.session.scalar(stmt) or 0

    async def count_referred(self) -> int:
        """How many users came through somebody's referral link."""
        stmt = select(func.count()).select_from(User).where(User.referrer_id.is_not(None))
        return await self.session.scalar(stmt) or 0

    async def set_unreachable(self, telegram_id: int, since: datetime | None) -> bool:
        """Mark the user unreachable since ``since`` (None: reachable again), in one UPDATE
        that leaves a user already in that state alone (an earlier mark keeps its time).
        True if it changed a row (False: no such user, or nothing to change)."""
        if since is None:
            changes = User.unreachable_since.is_not(None)
        else:
            changes = User.unreachable_since.is_(None)
        stmt = (
            update(User)
            .where(User.telegram_id == telegram_id, changes)
            .values(unreachable_since=since)
            .execution_options(synchronize_session="fetch")
        )
        result = cast(CursorResult[Any], await self.session.execute(stmt))
        return bool(result.rowcount)

    async def reachable_telegram_ids(self, batch: int = 1000) -> AsyncIterator[int]:
        """The Telegram ids of every reachable user, in registration order, streamed in
        batches (keyset pagination: no OFFSET, no server-side cursor)."""
        after = 0
        while True:
            stmt = (
                select(User.id, User.telegram_id)
                .where(User.unreachable_since.is_(None), User.id > after)
                .order_by(User.id)
                .limit(batch)
            )
            rows = (await self.session.execute(stmt)).all()
            for _row_id, telegram_id in rows:
                yield telegram_id
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def referrer_chain_contains(self, start_id: int, user_id: int) -> bool:
        """True if ``user_id`` is ``start_id`` or one of its referrers, referrers' referrers, ...

        One recursive query (portable to SQLite and PostgreSQL) instead of a round trip per step.
        """
        chain = (
            select(User.id, User.referrer_id, literal(0).label("depth"))
            .where(User.id == start_id)
            .cte("referrer_chain", recursive=True)
        )
        parent = User.__table__.alias("parent")
        chain = chain.union_all(
            select(parent.c.id, parent.c.referrer_id, (chain.c.depth + 1).label("depth")).where(
                parent.c.id == chain.c.referrer_id, chain.c.depth < _MAX_CHAIN_DEPTH
            )
        )
        stmt = select(chain.c.id).where(chain.c.id == user_id).limit(1)
        return await self.session.scalar(stmt) is not None
