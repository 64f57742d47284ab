"""attach_referrer: once, no self-referral, no cycles, unknown codes refused; uses counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app.models import User
from app.services import ReferralResult, attach_referrer, referral_link_code
from app.unit_of_work import AppUnitOfWork
from db_manager import UnitOfWorkFactory

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
    make_user_fixture,
    story_fixture,
    uow_factory_fixture,
)

MakeUser = Callable[[int], Awaitable[User]]


async def _code(uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User) -> str:
    async with uow_factory() as uow:
        return await referral_link_code(uow, user)


async def _attach(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], telegram_id: int, code: str
) -> ReferralResult:
    async with uow_factory() as uow:
        user = await uow.users.get_by_telegram_id(telegram_id)
        assert user is not None
        return await attach_referrer(uow, user, code)


async def _referrer_of(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], telegram_id: int
) -> int | None:
    async with uow_factory() as uow:
        user = await uow.users.get_by_telegram_id(telegram_id)
        assert user is not None
        return user.referrer_id


async def _uses(uow_factory: UnitOfWorkFactory[AppUnitOfWork], code: str) -> int:
    async with uow_factory() as uow:
        link = await uow.referrals.get_by_code(code)
        assert link is not None
        return link.uses


async def test_referral_link_code_is_stable(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    code = await _code(uow_factory, alice)
    assert code == await _code(uow_factory, alice)
    assert all(c.isalnum() or c in "-_" for c in code)


async def test_attach_sets_the_referrer_and_counts_the_use(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    await make_user(2)
    code = await _code(uow_factory, alice)
    async with uow_factory() as uow:
        bob = await uow.users.get_by_telegram_id(2)
        assert bob is not None
        assert await attach_referrer(uow, bob, code) is ReferralResult.ATTACHED
        assert bob.referrer_id == alice.id
    assert await _referrer_of(uow_factory, 2) == alice.id
    assert await _uses(uow_factory, code) == 1
    async with uow_factory() as uow:
        assert await uow.users.count_referrals(alice.id) == 1


async def test_unknown_code_changes_nothing(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    await make_user(2)
    assert await _attach(uow_factory, 2, "no-such-code") is ReferralResult.UNKNOWN_CODE
    assert await _attach(uow_factory, 2, "   ") is ReferralResult.UNKNOWN_CODE
    assert await _attach(uow_factory, 2, "x" * 65) is ReferralResult.UNKNOWN_CODE
    assert await _referrer_of(uow_factory, 2) is None


async def test_self_referral_is_refused(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    code = await _code(uow_factory, alice)
    assert await _attach(uow_factory, 1, code) is ReferralResult.SELF_REFERRAL
    assert await _referrer_of(uow_factory, 1) is None
    assert await _uses(uow_factory, code) == 0


async def test_referrer_never_changes_after_the_first(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    carol = await make_user(3)
    await make_user(2)
    alice_code, carol_code = await _code(uow_factory, alice), await _code(uow_factory, carol)
    assert await _attach(uow_factory, 2, alice_code) is ReferralResult.ATTACHED
    assert await _attach(uow_factory, 2, alice_code) is ReferralResult.ALREADY_REFERRED
    assert await _attach(uow_factory, 2, carol_code) is ReferralResult.ALREADY_REFERRED
    assert await _referrer_of(uow_factory, 2) == alice.id
    assert await _uses(uow_factory, alice_code) == 1
    assert await _uses(uow_factory, carol_code) == 0


async def test_cycles_are_refused_direct_and_through_a_chain(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    bob = await make_user(2)
    carol = await make_user(3)
    # alice -> bob -> carol (each referred the next)
    assert await _attach(uow_factory, 2, await _code(uow_factory, alice)) is ReferralResult.ATTACHED
    assert await _attach(uow_factory, 3, await _code(uow_factory, bob)) is ReferralResult.ATTACHED
    # bob referring alice would close a loop; so would carol, further down the chain.
    assert await _attach(uow_factory, 1, await _code(uow_factory, bob)) is ReferralResult.CYCLE
    assert await _attach(uow_factory, 1, await _code(uow_factory, carol)) is ReferralResult.CYCLE
    assert await _referrer_of(uow_factory, 1) is None


async def test_concurrent_opposite_attaches_cannot_make_a_cycle(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    bob = await make_user(2)
    alice_code, bob_code = await _code(uow_factory, alice), await _code(uow_factory, bob)
    results = await asyncio.gather(
        _attach(uow_factory, 1, bob_code), _attach(uow_factory, 2, alice_code)
    )
    assert sorted(results) == sorted([ReferralResult.ATTACHED, ReferralResult.CYCLE])
    referrers = [await _referrer_of(uow_factory, 1), await _referrer_of(uow_factory, 2)]
    assert referrers.count(None) == 1


async def test_concurrent_attaches_of_one_user_keep_the_first(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    alice = await make_user(1)
    carol = await make_user(3)
    await make_user(2)
    alice_code, carol_code = await _code(uow_factory, alice), await _code(uow_factory, carol)
    results = await asyncio.gather(
        _attach(uow_factory, 2, alice_code), _attach(uow_factory, 2, carol_code)
    )
    assert sorted(results) == sorted([ReferralResult.ATTACHED, ReferralResult.ALREADY_REFERRED])
    assert await _uses(uow_factory, alice_code) + await _uses(uow_factory, carol_code) == 1
