"""Read views for the HTTP API: user_profile, user_payments and stats match the database.

They take any AsyncSession: the tests read through the read path's snapshot, as the API
does, and once through a unit of work's session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import func, select

from app.models import NovelMessage, ReferralLink, User
from app.services import (
    PREMIUM_PAYLOAD,
    PREMIUM_PRICE_XTR,
    Stats,
    attach_referrer,
    record_successful_payment,
    referral_link_code,
    stats,
    user_payments,
    user_profile,
)
from app.story import Story
from app.unit_of_work import AppUnitOfWork
from db_manager import Database, UnitOfWorkFactory

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
    make_user_fixture,
    story_fixture,
    uow_factory_fixture,
)

MakeUser = Callable[[int], Awaitable[User]]


async def _refer(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], referrer: User, telegram_id: int
) -> None:
    async with uow_factory() as uow:
        code = await referral_link_code(uow, referrer)
        user = await uow.users.get_by_telegram_id(telegram_id)
        assert user is not None
        await attach_referrer(uow, user, code)


async def _pay(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User, charge: str, amount: int
) -> None:
    async with uow_factory() as uow:
        await record_successful_payment(uow, user, amount, "XTR", PREMIUM_PAYLOAD, charge, None)


async def test_stats_of_an_empty_database_are_zero(app_db: Database[AppUnitOfWork]) -> None:
    async with app_db.reader.snapshot() as session:
        assert await stats(session) == Stats(users=0, referrals=0, payments=0, payments_sum=0)


async def test_stats_count_users_referrals_and_payments(
    app_db: Database[AppUnitOfWork],
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    make_user: MakeUser,
) -> None:
    alice = await make_user(1)
    bob = await make_user(2)
    await make_user(3)
    await make_user(4)
    await _refer(uow_factory, alice, 2)
    await _refer(uow_factory, alice, 3)
    await _pay(uow_factory, alice, "c1", PREMIUM_PRICE_XTR)
    await _pay(uow_factory, bob, "c2", 70)
    await _pay(uow_factory, bob, "c2", 70)  # redelivered: not counted twice

    async with app_db.reader.snapshot() as session:
        numbers = await stats(session)
        users = await session.scalar(select(func.count()).select_from(User))
    assert numbers == Stats(users=4, referrals=2, payments=2, payments_sum=PREMIUM_PRICE_XTR + 70)
    assert numbers.users == users
    async with uow_factory() as uow:  # a unit of work's session serves them as well
        assert await stats(uow.session) == numbers


async def test_user_profile_shows_referrer_referrals_scene_and_premium(
    app_db: Database[AppUnitOfWork],
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    make_user: MakeUser,
    story: Story,
) -> None:
    alice = await make_user(1)
    bob = await make_user(2)
    await _refer(uow_factory, alice, 2)
    await _pay(uow_factory, bob, "c1", PREMIUM_PRICE_XTR)

    async with app_db.reader.snapshot() as session:
        a = await user_profile(session, 1)
        b = await user_profile(session, 2)
    async with uow_factory() as uow:
        alice_code = (await uow.referrals.get_by_owner(alice.id) or ReferralLink()).code
    assert a is not None and b is not None
    assert (a.telegram_id, a.username, a.referrer_telegram_id, a.referral_count) == (
        1,
        "user1",
        None,
        1,
    )
    assert a.referral_code == alice_code and not a.premium and a.scene == story.start
    assert a.created_at.tzinfo is not None
    assert (b.referrer_telegram_id, b.referral_count, b.premium) == (1, 0, True)


async def test_read_views_of_an_unknown_user_are_none_and_write_nothing(
    app_db: Database[AppUnitOfWork], uow_factory: UnitOfWorkFactory[AppUnitOfWork]
) -> None:
    async with app_db.reader.snapshot() as session:
        assert await user_profile(session, 404) is None
        assert await user_payments(session, 404) is None
        assert not session.new and not session.dirty
    async with uow_factory() as uow:
        assert await uow.users.count() == 0
        assert await uow.session.scalar(select(func.count()).select_from(NovelMessage)) == 0


async def test_user_payments_lists_the_users_payments_oldest_first(
    app_db: Database[AppUnitOfWork],
    uow_factory: UnitOfWorkFactory[AppUnitOfWork],
    make_user: MakeUser,
) -> None:
    alice = await make_user(1)
    bob = await make_user(2)
    await _pay(uow_factory, alice, "a1", 50)
    await _pay(uow_factory, bob, "b1", 10)
    await _pay(uow_factory, alice, "a2", 20)

    async with app_db.reader.snapshot() as session:
        listed = await user_payments(session, 1)
        none_yet = await user_payments(session, 2)
    assert listed is not None
    assert [(p.telegram_payment_charge_id, p.amount, p.currency) for p in listed] == [
        ("a1", 50, "XTR"),
        ("a2", 20, "XTR"),
    ]
    assert none_yet is not None and [p.telegram_payment_charge_id for p in none_yet] == ["b1"]
