"""Referral links and referrers: each user has one link; a referrer is attached once.

Rules of :func:`attach_referrer`: the code must exist; nobody refers themselves; a user's
referrer never changes once set; and no cycles (A refers B, B cannot then refer A, nor
anyone up A's chain). Both users' rows are locked first, so two concurrent attaches
cannot both pass the checks.
"""

from __future__ import annotations

import enum
import re
import secrets
from functools import partial

from app.models import ReferralLink, User
from app.models.referral_link import REFERRAL_CODE_MAX_LENGTH
from app.services.errors import ServiceError
from app.services.savepoint import insert_once
from app.unit_of_work import AppUnitOfWork

__all__ = [
    "ReferralResult",
    "attach_referrer",
    "ensure_referral_link",
    "new_referral_code",
    "referral_link_code",
]

_CODE_BYTES = 6  # 8 url-safe characters; 2**48 codes
# What a code can be (a Telegram deep-link parameter); anything else is no code of ours and
# never reaches a query (NUL or over-long text would be a database error there).
_CODE_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{REFERRAL_CODE_MAX_LENGTH}}}")
_CODE_ATTEMPTS = 5


class ReferralResult(enum.StrEnum):
    """What :func:`attach_referrer` did."""

    ATTACHED = "attached"
    UNKNOWN_CODE = "unknown_code"
    SELF_REFERRAL = "self_referral"
    ALREADY_REFERRED = "already_referred"
    CYCLE = "cycle"


def new_referral_code() -> str:
    """A random code fit for a Telegram deep link (``[A-Za-z0-9_-]``, 8 characters)."""
    return secrets.token_urlsafe(_CODE_BYTES)


async def ensure_referral_link(
    uow: AppUnitOfWork, user: User, *, new_user: bool = False
) -> ReferralLink:
    """The user's referral link, created if missing (``new_user`` skips the lookup)."""
    link = None if new_user else await uow.referrals.get_by_owner(user.id)
    for _ in range(_CODE_ATTEMPTS):
        if link is not None:
            return link
        candidate = ReferralLink(owner_id=user.id, code=new_referral_code(), uses=0)
        if await insert_once(uow.session, partial(uow.referrals.add, candidate)):
            return candidate
        # Either a concurrent registration created the link, or the code was taken.
        link = await uow.referrals.get_by_owner(user.id)
    raise ServiceError("A referral link could not be created; try again.")  # pragma: no cover


async def referral_link_code(uow: AppUnitOfWork, user: User) -> str:
    """The code of the user's referral link (the link is created if missing)."""
    return (await ensure_referral_link(uow, user)).code


async def attach_referrer(uow: AppUnitOfWork, user: User, code: str) -> ReferralResult:
    """Make the owner of ``code`` the referrer of ``user``, once; count the link's use."""
    code = code.strip()
    if _CODE_PATTERN.fullmatch(code) is None:
        return ReferralResult.UNKNOWN_CODE
    link = await uow.referrals.get_by_code(code)
    if link is None:
        return ReferralResult.UNKNOWN_CODE
    if link.owner_id == user.id:
        return ReferralResult.SELF_REFERRAL
    if user.referrer_id is not None:
        return ReferralResult.ALREADY_REFERRED
    # Lock both rows (in id order) and reload them: a concurrent attach for either user
    # waits here and then sees this one's result (SQLite serializes writers anyway).
    await uow.users.lock(user.id, link.owner_id)
    if user.referrer_id is not None:
        return ReferralResult.ALREADY_REFERRED
    if await uow.users.referrer_chain_contains(link.owner_id, user.id):
        return ReferralResult.CYCLE
    user.referrer_id = link.owner_id
    await uow.referrals.increment_uses(link)
    await uow.session.flush()
    return ReferralResult.ATTACHED
