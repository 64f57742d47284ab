"""register_user: idempotent, also under concurrency, and sets up link and novel state."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

import app.services.referrals as referrals_service
from app.models import NovelState, ReferralLink, User
from app.repositories import UserRepository
from app.services import (
    ReferralResult,
    attach_referrer,
    get_novel_state,
    referral_link_code,
    register_user,
)
from app.story import Story
from app.unit_of_work import AppUnitOfWork
from db_manager import UnitOfWorkFactory

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
    story_fixture,
    uow_factory_fixture,
)


async def _count(uow_factory: UnitOfWorkFactory[AppUnitOfWork], model: type[object]) -> int:
    async with uow_factory() as uow:
        return await uow.session.scalar(select(func.count()).select_from(model)) or 0


async def test_register_creates_user_with_referral_link_and_novel_state(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> None:
    async with uow_factory() as uow:
        user, created = await register_user(
            uow, 10**12, "alice", "Alice", "Liddell", "en", story=story
        )
    assert created
    assert user.id is not None
    assert user.created_at.tzinfo is not None
    async with uow_factory() as uow:
        stored = await uow.users.get_by_telegram_id(10**12)
        assert stored is not None
        assert (stored.username, stored.first_name, stored.last_name, stored.language_code) == (
            "alice",
            "Alice",
            "Liddell",
            "en",
        )
        assert stored.created_at.tzinfo is not None
        link = await uow.referrals.get_by_owner(stored.id)
        assert link is not None and link.uses == 0 and len(link.code) >= 8
        state = await uow.novel_states.get_for_user(stored.id)
        assert state is not None
        assert state.scene == story.start and state.variables == {} and not state.premium


async def test_repeated_register_creates_no_second_user_and_updates_the_profile(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> None:
    async with uow_factory() as uow:
        first, created = await register_user(uow, 42, "old", "A", None, "en", story=story)
    assert created
    for _ in range(2):
        async with uow_factory() as uow:
            again, created = await register_user(uow, 42, "new", "A", None, "de", story=story)
        assert not created
        assert again.id == first.id
    async with uow_factory() as uow:
        stored = await uow.users.get_by_telegram_id(42)
        assert stored is not None and stored.username == "new" and stored.language_code == "de"
    assert await _count(uow_factory, User) == 1
    assert await _count(uow_factory, ReferralLink) == 1
    assert await _count(uow_factory, NovelState) == 1


async def test_concurrent_registrations_of_one_id_create_one_user(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> None:
    async def start() -> tuple[int, bool]:
        async with uow_factory() as uow:
            user, created = await register_user(uow, 777, "race", None, None, None, story=story)
            return user.id, created

    results = await asyncio.gather(start(), start(), start())
    assert len({user_id for user_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, True]
    assert await _count(uow_factory, User) == 1
    assert await _count(uow_factory, ReferralLink) == 1
    assert await _count(uow_factory, NovelState) == 1


async def test_register_without_a_story_starts_at_the_story_start_later(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> None:
    async with uow_factory() as uow:
        user, _ = await register_user(uow, 5)
    async with uow_factory() as uow:
        state = await get_novel_state(uow, user, story)
        assert state.scene == story.start
    async with uow_factory() as uow:
        stored = await uow.novel_states.get_for_user(user.id)
        assert stored is not None and stored.scene == story.start


async def test_losing_the_registration_race_returns_the_winners_user(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic on every backend: the first lookup misses a user that is already there,
    so the INSERT hits the unique constraint inside the SAVEPOINT and registration goes on."""
    async with uow_factory() as uow:
        winner, _ = await register_user(uow, 9, "first", None, None, None, story=story)
    real = UserRepository.get_by_telegram_id
    calls: list[int] = []

    async def miss_once(self: UserRepository, telegram_id: int) -> User | None:
        calls.append(telegram_id)
        return None if len(calls) == 1 else await real(self, telegram_id)

    monkeypatch.setattr(UserRepository, "get_by_telegram_id", miss_once)
    async with uow_factory() as uow:
        user, created = await register_user(uow, 9, "second", None, None, None, story=story)
    assert len(calls) == 2
    assert (user.id, created) == (winner.id, False)
    assert await _count(uow_factory, User) == 1
    assert await _count(uow_factory, ReferralLink) == 1
    assert await _count(uow_factory, NovelState) == 1


async def test_a_referral_code_collision_is_retried_with_a_new_code(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with uow_factory() as uow:
        await register_user(uow, 1, story=story)
        taken = await uow.referrals.get_by_owner(1)
    assert taken is not None
    codes = iter([taken.code, "fresh-code"])
    monkeypatch.setattr(referrals_service, "new_referral_code", lambda: next(codes))
    async with uow_factory() as uow:
        user, _ = await register_user(uow, 2, story=story)
        assert await referral_link_code(uow, user) == "fresh-code"
    assert await _count(uow_factory, ReferralLink) == 2


async def test_register_then_attach_in_one_unit_of_work(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> None:
    """What /start <code> does: register the newcomer and attach the referrer in one go."""
    async with uow_factory() as uow:
        alice, _ = await register_user(uow, 1, story=story)
        code = await referral_link_code(uow, alice)
    async with uow_factory() as uow:
        bob, created = await register_user(uow, 2, story=story)
        assert created
        assert await attach_referrer(uow, bob, code) is ReferralResult.ATTACHED
    async with uow_factory() as uow:
        stored = await uow.users.get_by_telegram_id(2)
        assert stored is not None and stored.referrer_id == alice.id
