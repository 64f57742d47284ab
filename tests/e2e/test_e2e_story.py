"""Acceptance 2: B walks the story by pressing buttons; state and log match; bad buttons don't."""

from __future__ import annotations

from typing import Any

from e2e_support import (  # noqa: F401  (pytest fixtures, used by name)
    USER_B,
    Deployment,
    choice_ids,
    deployment_fixture,
    story_fixture,
)
from support.updates import callback_query_update, start_update

from app.story import Story

BOT_MESSAGE_ID = 4242  # the id Telegram gave the bot's scene message (the buttons live on it)


async def press(
    deployment: Deployment, choice_id: str, *, message_text: str = "scene"
) -> dict[str, Any]:
    """B presses the button ``choice:<choice_id>`` on the bot's scene message."""
    update = callback_query_update(
        f"choice:{choice_id}",
        user_id=USER_B,
        message_id=BOT_MESSAGE_ID,
        message_text=message_text,
    )
    answer = await deployment.deliver(update)
    assert answer is not None
    assert answer["method"] == "answerCallbackQuery"
    assert answer["callback_query_id"] == update["callback_query"]["id"]
    return answer


def route_to_premium(story: Story) -> list[str]:
    """The shortest list of choice ids from the start to a scene offering a premium choice."""
    routes: dict[str, list[str]] = {story.start: []}
    queue = [story.start]
    while queue:
        scene = story.scene(queue.pop(0))
        if any(story.scene(c.target).premium for c in scene.choices):
            return routes[scene.id]
        for choice in scene.choices:
            if choice.target not in routes and not story.scene(choice.target).premium:
                routes[choice.target] = [*routes[scene.id], choice.id]
                queue.append(choice.target)
    raise AssertionError("the story has no premium branch")


async def walk(
    deployment: Deployment, story: Story, steps: int, *, route: list[str] | None = None
) -> list[tuple[str, str, str]]:
    """B /start, then ``steps`` presses, each on a button of the scene shown last (the next
    of ``route``, or the first that does not lead into premium). Returns the log the
    database should hold."""
    answer = await deployment.deliver(start_update(user_id=USER_B, first_name="Bob"))
    assert answer is not None
    assert answer["method"] == "sendMessage"
    scene = story.start_scene
    assert answer["text"] == scene.text
    expected = [(scene.id, "in", "/start"), (scene.id, "out", scene.text)]
    markup = answer["reply_markup"]
    for _ in range(steps):
        offered = choice_ids(markup)
        assert offered == [choice.id for choice in scene.choices]
        wanted = route.pop(0) if route else None
        choice = next(
            c
            for c in scene.choices
            if (c.id == wanted if wanted else not story.scene(c.target).premium)
        )
        deployment.telegram.clear()

        answer = await press(deployment, choice.id, message_text=scene.text)
        assert "text" not in answer  # a plain acknowledgement: no alert

        # The next scene replaces the old one in place, sent after the commit.
        assert deployment.telegram.method_names == ["editMessageText"]
        edit = deployment.telegram.last("editMessageText").params
        target = story.scene(choice.target)
        assert edit["chat_id"] == USER_B
        assert edit["message_id"] == BOT_MESSAGE_ID
        assert edit["text"] == target.text
        expected += [(scene.id, "in", choice.label), (target.id, "out", target.text)]
        scene, markup = target, edit.get("reply_markup")
        assert await current_scene(deployment) == scene.id
    return expected


async def current_scene(deployment: Deployment) -> str:
    b = await deployment.user_row_id(USER_B)
    return str(
        await deployment.scalar("SELECT scene FROM app__novel_states WHERE user_id = :u", u=b)
    )


async def message_log(deployment: Deployment) -> list[tuple[str, str, str]]:
    b = await deployment.user_row_id(USER_B)
    rows = await deployment.rows(
        "SELECT scene, direction, text FROM app__novel_messages WHERE user_id = :u ORDER BY id",
        u=b,
    )
    return [(str(scene), str(direction), str(text)) for scene, direction, text in rows]


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

    for choice_id in (stale, foreign, "no_such_choice"):
        deployment.telegram.clear()
        answer = await press(deployment, choice_id)
        assert answer["show_alert"] is True
        assert "not available" in answer["text"]
        assert "latest scene" in answer["text"]
        assert deployment.telegram.method_names == []  # no edit, no new message

    assert await deployment.snapshot() == before
    assert await current_scene(deployment) == current.id
    assert await message_log(deployment) == expected_log

    # The right button still works afterwards.
    deployment.telegram.clear()
    choice = next(c for c in current.choices if not story.scene(c.target).premium)
    answer = await press(deployment, choice.id)
    assert "text" not in answer
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
    assert deployment.telegram.method_names == []
    assert await deployment.snapshot() == before
