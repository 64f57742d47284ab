"""The story per user: show the scene, advance by choices, refuse stale/foreign/premium ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from app.models import MessageDirection, NovelState, User
from app.services import (
    PREMIUM_PAYLOAD,
    PREMIUM_PRICE_XTR,
    ChoiceNotAvailable,
    PremiumRequired,
    advance_story,
    record_successful_payment,
    show_scene,
)
from app.story import Scene, Story
from app.unit_of_work import AppUnitOfWork
from db_manager import UnitOfWorkFactory

from .app_support import (  # noqa: F401  (pytest fixtures, used by name)
    app_db_fixture,
    make_user_fixture,
    story_fixture,
    uow_factory_fixture,
)

MakeUser = Callable[[int], Awaitable[User]]


async def _advance(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User, choice_id: str, story: Story
) -> Scene:
    async with uow_factory() as uow:
        return await advance_story(uow, user, choice_id, story)


async def _state(uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User) -> NovelState:
    async with uow_factory() as uow:
        state = await uow.novel_states.get_for_user(user.id)
        assert state is not None
        return state


async def _log(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User
) -> list[tuple[str, str, str]]:
    async with uow_factory() as uow:
        messages = await uow.novel_messages.list_for_user(user.id)
        return [(m.direction, m.scene, m.text) for m in messages]


def _premium_entry(story: Story) -> tuple[Scene, str, Scene]:
    """A free scene, the id of its choice into a premium scene, and that premium scene."""
    for scene in story.scenes.values():
        for choice in scene.choices:
            target = story.scene(choice.target)
            if target.premium and not scene.premium:
                return scene, choice.id, target
    raise AssertionError("the story has no premium branch")


async def _place(uow_factory: UnitOfWorkFactory[AppUnitOfWork], user: User, scene_id: str) -> None:
    async with uow_factory() as uow:
        state = await uow.novel_states.get_for_user(user.id)
        assert state is not None
        state.scene = scene_id


async def test_show_scene_logs_the_incoming_text_and_the_scene(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story
) -> None:
    user = await make_user(1)
    async with uow_factory() as uow:
        scene = await show_scene(uow, user, story, incoming="/start")
    assert scene is story.start_scene
    assert await _log(uow_factory, user) == [
        ("in", story.start, "/start"),
        ("out", story.start, story.start_scene.text),
    ]


async def test_walking_three_scenes_moves_the_state_and_logs_each_step(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story
) -> None:
    user = await make_user(1)
    expected: list[tuple[str, str, str]] = []
    scene = story.start_scene
    for step in range(3):
        choice = scene.choices[-1] if step == 0 else scene.choices[0]
        nxt = await _advance(uow_factory, user, choice.id, story)
        assert nxt.id == choice.target
        expected += [
            (MessageDirection.IN.value, scene.id, choice.label),
            (MessageDirection.OUT.value, nxt.id, nxt.text),
        ]
        scene = nxt
    state = await _state(uow_factory, user)
    assert state.scene == scene.id
    assert await _log(uow_factory, user) == expected


async def test_choice_sets_story_variables_and_a_restart_clears_them(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story
) -> None:
    user = await make_user(1)
    scene, choice = next(
        (s, c) for s in story.scenes.values() for c in s.choices if c.set and not s.premium
    )
    await _place(uow_factory, user, scene.id)
    await _advance(uow_factory, user, choice.id, story)
    state = await _state(uow_factory, user)
    assert state.variables == dict(choice.set)

    ending, restart = next(
        (s, c) for s in story.scenes.values() for c in s.choices if c.target == story.start
    )
    await _place(uow_factory, user, ending.id)
    await _advance(uow_factory, user, restart.id, story)
    state = await _state(uow_factory, user)
    assert state.scene == story.start and state.variables == dict(restart.set)


@pytest.mark.parametrize("kind", ["foreign", "unknown", "stale"])
async def test_a_choice_not_offered_by_the_current_scene_is_refused_and_changes_nothing(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story, kind: str
) -> None:
    user = await make_user(1)
    first = story.start_scene.choices[0]
    if kind == "stale":
        await _advance(uow_factory, user, first.id, story)
        choice_id = first.id  # the button of the scene we just left, clicked again
    elif kind == "foreign":
        choice_id = next(
            c.id for s in story.scenes.values() if s.id != story.start for c in s.choices
        )
    else:
        choice_id = "no_such_choice"
    before_state = (await _state(uow_factory, user)).scene
    before_log = await _log(uow_factory, user)

    with pytest.raises(ChoiceNotAvailable) as caught:
        await _advance(uow_factory, user, choice_id, story)

    assert caught.value.choice_id == choice_id
    assert caught.value.current_scene == before_state
    assert (await _state(uow_factory, user)).scene == before_state
    assert await _log(uow_factory, user) == before_log


async def test_premium_scene_without_payment_is_refused(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story
) -> None:
    user = await make_user(1)
    gate, choice_id, premium = _premium_entry(story)
    await _place(uow_factory, user, gate.id)

    with pytest.raises(PremiumRequired) as caught:
        await _advance(uow_factory, user, choice_id, story)

    assert caught.value.scene == premium.id
    assert "/buy" in str(caught.value)
    assert (await _state(uow_factory, user)).scene == gate.id
    assert await _log(uow_factory, user) == []


async def test_premium_scene_after_payment_is_entered(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story
) -> None:
    user = await make_user(1)
    gate, choice_id, premium = _premium_entry(story)
    await _place(uow_factory, user, gate.id)
    async with uow_factory() as uow:
        await record_successful_payment(
            uow, user, PREMIUM_PRICE_XTR, "XTR", PREMIUM_PAYLOAD, "charge-1", None
        )

    scene = await _advance(uow_factory, user, choice_id, story)

    assert scene.id == premium.id
    state = await _state(uow_factory, user)
    assert state.scene == premium.id and state.premium


async def test_a_scene_the_story_no_longer_has_falls_back_to_the_start(
    uow_factory: UnitOfWorkFactory[AppUnitOfWork], make_user: MakeUser, story: Story
) -> None:
    user = await make_user(1)
    await _place(uow_factory, user, "removed_scene")
    async with uow_factory() as uow:
        scene = await show_scene(uow, user, story)
    assert scene.id == story.start
    assert (await _state(uow_factory, user)).scene == story.start
