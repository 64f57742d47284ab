"""The services refuse what the columns cannot hold before their first statement.

``uow.used_database`` stays False when a value is refused: no session was even created, so
nothing reached the driver. Display text is accepted, cut and cleaned instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from app.models import NovelMessage, User
from app.services import (
    InvalidInput,
    ReferralResult,
    attach_referrer,
    record_successful_payment,
    register_user,
    show_scene,
)
from app.services.limits import MESSAGE_TEXT_MAX_LENGTH
from app.story import Story
from app.unit_of_work import AppUnitOfWork
from db_manager import UnitOfWorkFactory

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
    make_user_fixture,
    story_fixture,
    uow_factory_fixture,
)

MakeUser = Callable[[int], Awaitable[User]]


@pytest.mark.parametrize("telegram_id", [0, -1, 2**63, -(2**63) - 1])
async def test_register_user_refuses_an_id_beyond_the_column_before_any_statement(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], telegram_id: int
) -> None:
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="telegram user id"):
            await register_user(uow, telegram_id, "name")
        assert not uow.used_database


PAYMENT = {
    "amount": 50,
    "currency": "XTR",
    "payload": "premium_unlock",
    "telegram_charge_id": "stx-1",
    "provider_charge_id": None,
}


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 0},
        {"amount": 2**63},
        {"currency": "XT"},
        {"currency": "X\x00R"},
        {"payload": ""},
        {"payload": "p" * 129},
        {"telegram_charge_id": "c" * 256},
        {"provider_charge_id": "p\x00"},
    ],
)
async def test_a_payment_that_does_not_fit_is_refused_before_any_statement(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, changes: dict[str, Any]
) -> None:
    user = await make_user(1)
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput):
            await record_successful_payment(uow, user, **{**PAYMENT, **changes})
        assert not uow.used_database


async def test_a_referral_code_that_is_no_code_is_unknown_without_a_query(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser
) -> None:
    user = await make_user(1)
    async with uow_factory() as uow:
        for code in ("abc\x00def", "x" * 65, "code with spaces", "ünï"):
            assert await attach_referrer(uow, user, code) is ReferralResult.UNKNOWN_CODE
        assert not uow.used_database


async def test_profile_and_message_text_are_cut_and_cleaned(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], story: Story
) -> None:
    async with uow_factory() as uow:
        user, _ = await register_user(
            uow, 5, "u\x00" * 100, "F" * 300, "L\x00ast", "x" * 40, story=story
        )
        await show_scene(uow, user, story, incoming="/start " + "\x00é" * 5_000)
    async with uow_factory() as uow:
        stored = await uow.users.get_by_telegram_id(5)
        assert stored is not None
        assert (stored.username, stored.first_name, stored.last_name, stored.language_code) == (
            "u" * 64,
            "F" * 256,
            "Last",
            "x" * 35,
        )
        texts = (await uow.session.scalars(select(NovelMessage.text))).all()
    assert texts[0] == ("/start " + "é" * 5_000)[:MESSAGE_TEXT_MAX_LENGTH]
    assert all("\x00" not in text and len(text) <= MESSAGE_TEXT_MAX_LENGTH for text in texts)
