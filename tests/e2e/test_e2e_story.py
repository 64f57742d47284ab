"""Acceptance 2: B walks the story by pressing buttons; state and log match; bad buttons don't."""

from __future__ import annotations

import asyncio

from app.story import Story
from tests.support.updates import callback_query_update, start_update

from .e2e_support import (
    USER_B,
    Deployment,
    choice_ids,
    current_scene,
    message_log,
    press,
    route_to_premium,
    walk,
)

USER_C = 7_000_003


async def test_three_scenes_by_buttons_state_and_log_match(
    deployment: Deployment, story: Story
) -> None:
    expected_log = await walk(deployment, story, steps=3)

    # harbor -> lighthouse_path -> lighthouse_base -> cellar; the database agrees.
    path = [scene for scene, direction, _ in expected_log if direction == "out"]
    assert len(path) == 4
    assert len(set(path)) == 4
    assert await current_scene(deployment) == path[-1]
    assert await message_log(deployment) == expected_log
    assert len(expected_log) == 2 + 3 * 2
    profile = await deployment.api_json(f"/api/users/{USER_B}")
    assert profile["scene"] == path[-1]
    assert profile["premium"] is False
    # One state row for B, and every logged message is B's.
    assert await deployment.scalar("SELECT count(*) FROM app__novel_states") == 1
    assert await deployment.scalar("SELECT count(*) FROM app__novel_messages") == len(expected_log)


async def test_stale_and_foreign_buttons_are_explained_and_change_nothing(
    deployment: Deployment, story: Story
) -> None:
    expected_log = await walk(deployment, story, steps=3)
    current = story.scene(await current_scene(deployment))
    visited = {scene for scene, _, _ in expected_log}
    stale = story.start_scene.choices[0].id  # a button of the first scene, pressed again
    foreign = next(  # a real choice id of a scene B is not in (and never was)
        choice.id
        for scene in story.scenes.values()
        if scene.id not in visited and not scene.premium
        for choice in scene.choices
    )
    assert stale not in {c.id for c in current.choices}
    assert foreign not in {c.id for c in current.choices}
    before = await deployment.snapshot()

    outbox_before = await deployment.settled()
    for choice_id in (stale, foreign, "no_such_choice"):
        deployment.telegram.clear()
        answer = await press(deployment, choice_id)
        assert answer["show_alert"] is True
        assert "not available" in answer["text"]
        assert "latest scene" in answer["text"]
        assert deployment.telegram.method_names == []  # no edit, no new message

    assert await deployment.settled() == outbox_before  # and none enqueued
    assert await deployment.snapshot() == before
    assert await current_scene(deployment) == current.id
    assert await message_log(deployment) == expected_log

    # The right button still works afterwards.
    deployment.telegram.clear()
    choice = next(c for c in current.choices if not story.scene(c.target).premium)
    answer = await press(deployment, choice.id)
    assert "text" not in answer
    await deployment.sent("editMessageText")
    assert deployment.telegram.method_names == ["editMessageText"]
    assert await current_scene(deployment) == choice.target


async def test_premium_button_without_payment_is_refused(
    deployment: Deployment, story: Story
) -> None:
    # Walk until a scene offers a choice into premium (harbor ... journal -> archive).
    route = route_to_premium(story)
    await walk(deployment, story, steps=len(route), route=list(route))
    scene = story.scene(await current_scene(deployment))
    premium = next(c for c in scene.choices if story.scene(c.target).premium)
    before = await deployment.snapshot()

    deployment.telegram.clear()
    answer = await press(deployment, premium.id)
    assert answer["show_alert"] is True
    assert "/buy" in answer["text"]
    assert await deployment.settled() == [("editMessageText", "sent", USER_B)] * len(route)
    assert deployment.telegram.method_names == []
    assert await deployment.snapshot() == before


async def test_button_of_a_user_who_never_started_is_explained(deployment: Deployment) -> None:
    update = callback_query_update("choice:harbor_path", user_id=USER_C, message_id=7)
    answer = await deployment.deliver(update)
    assert answer is not None
    assert answer["method"] == "answerCallbackQuery"
    assert answer["show_alert"] is True
    assert "/start" in answer["text"]
    assert deployment.telegram.method_names == []
    assert await deployment.settled() == []
    assert await deployment.scalar("SELECT count(*) FROM app__users") == 0
    assert await deployment.scalar("SELECT count(*) FROM app__novel_messages") == 0


async def test_an_edit_telegram_refuses_ends_dead_and_start_shows_the_scene(
    deployment: Deployment, story: Story
) -> None:
    """The outbox sends the edit after the handler is done, so a refused edit cannot fall
    back to a new message: its row ends dead with Telegram's reason, the state has moved
    on, and /start shows the current scene with its buttons."""
    await walk(deployment, story, steps=1)
    scene = story.scene(await current_scene(deployment))
    choice = scene.choices[0]
    deployment.telegram.clear()
    deployment.telegram.fail("editMessageText", description="Bad Request: message can't be edited")

    answer = await press(deployment, choice.id)
    assert "text" not in answer
    rows = await deployment.settled()
    assert rows[-1] == ("editMessageText", "dead", USER_B)
    assert deployment.telegram.method_names == ["editMessageText"]  # tried once, no retry
    assert (
        await deployment.scalar(
            "SELECT last_error FROM db_manager__telegram_outbox ORDER BY id DESC LIMIT 1"
        )
        == "Bad Request: message can't be edited"
    )
    target = story.scene(choice.target)
    assert await current_scene(deployment) == target.id

    shown = await deployment.deliver(start_update(user_id=USER_B, first_name="Bob"))
    assert shown is not None
    assert shown["text"] == target.text
    assert choice_ids(shown.get("reply_markup")) == [c.id for c in target.choices]


async def test_a_button_on_an_inaccessible_message_sends_the_next_scene(
    deployment: Deployment, story: Story
) -> None:
    await walk(deployment, story, steps=1)
    scene = story.scene(await current_scene(deployment))
    choice = scene.choices[0]
    update = callback_query_update(f"choice:{choice.id}", user_id=USER_B, message_id=3)
    # Telegram sends messages older than 48 hours as InaccessibleMessage (date 0).
    update["callback_query"]["message"] = {
        "message_id": 3,
        "chat": {"id": USER_B, "type": "private"},
        "date": 0,
    }
    deployment.telegram.clear()
    answer = await deployment.deliver(update)
    assert answer is not None
    assert answer["method"] == "answerCallbackQuery"
    await deployment.sent("sendMessage")
    assert deployment.telegram.method_names == ["sendMessage"]
    assert deployment.telegram.last("sendMessage").params["text"] == story.scene(choice.target).text
    assert await current_scene(deployment) == choice.target


async def test_a_double_click_is_applied_once(deployment: Deployment, story: Story) -> None:
    expected_log = await walk(deployment, story, steps=1)
    scene = story.scene(await current_scene(deployment))
    choice = scene.choices[0]
    deployment.telegram.clear()

    answers = await asyncio.gather(press(deployment, choice.id), press(deployment, choice.id))

    alerts = [answer for answer in answers if answer.get("show_alert")]
    assert len(alerts) == 1, answers
    assert "not available" in alerts[0]["text"]
    await deployment.sent("editMessageText")
    # The walk's edit, and one for the double click.
    assert await deployment.settled() == [("editMessageText", "sent", USER_B)] * 2
    assert deployment.telegram.method_names == ["editMessageText"]
    assert await current_scene(deployment) == choice.target
    target = story.scene(choice.target)
    assert await message_log(deployment) == [
        *expected_log,
        (scene.id, "in", choice.label),
        (target.id, "out", target.text),
    ]
