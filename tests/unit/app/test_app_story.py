"""The story file: the shipped one is valid; broken ones are refused, naming the scene."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from app.models.novel_state import SCENE_ID_MAX_LENGTH as STATE_SCENE_LENGTH
from app.story import StoryError, load_story, parse_story
from app.story.loader import CHOICE_ID_MAX_LENGTH, SCENE_ID_MAX_LENGTH


def _valid() -> dict[str, Any]:
    return {
        "title": "Tiny",
        "start": "a",
        "scenes": {
            "a": {
                "text": "A",
                "choices": [
                    {"id": "a_b", "label": "to b", "target": "b"},
                    {"id": "a_p", "label": "to p", "target": "p", "set": {"paid_path": True}},
                ],
            },
            "b": {"text": "B", "choices": [{"id": "b_a", "label": "back", "target": "a"}]},
            "p": {"text": "P", "premium": True},
        },
    }


def test_the_shipped_story_is_valid_and_has_a_premium_branch() -> None:
    story = load_story()
    assert 12 <= len(story.scenes) <= 20
    assert story.start in story.scenes and not story.start_scene.premium
    assert story.premium_scenes
    assert any(
        story.scene(c.target).premium
        for s in story.scenes.values()
        if not s.premium
        for c in s.choices
    )
    for scene in story.scenes.values():
        assert scene.text.strip()
        for choice in scene.choices:
            assert story.find_choice(choice.id) == (scene, choice)


def test_the_story_file_ships_inside_the_package() -> None:
    assert resources.files("app.story").joinpath("story.toml").is_file()


def test_scene_ids_fit_the_state_column() -> None:
    assert SCENE_ID_MAX_LENGTH == STATE_SCENE_LENGTH
    assert CHOICE_ID_MAX_LENGTH + len("story:") <= 64  # Telegram's callback_data limit


def test_a_valid_story_dict_is_parsed() -> None:
    story = parse_story(_valid())
    assert story.title == "Tiny" and story.start == "a"
    assert story.scene("p").premium and story.scene("p").is_ending
    assert story.find_choice("a_p") is not None
    assert story.find_choice("nope") is None
    assert dict(story.scene("a").choices[1].set) == {"paid_path": True}


def _broken(change: str) -> dict[str, Any]:
    data = copy.deepcopy(_valid())
    scenes = data["scenes"]
    if change == "missing-target":
        scenes["b"]["choices"][0]["target"] = "nowhere"
    elif change == "unreachable-premium":
        scenes["a"]["choices"].pop()
    elif change == "unreachable":
        scenes["lost"] = {"text": "L"}
    elif change == "duplicate-choice-id":
        scenes["b"]["choices"][0]["id"] = "a_b"
    elif change == "unknown-key":
        scenes["b"]["txt"] = "typo"
    elif change == "no-text":
        scenes["b"]["text"] = "  "
    elif change == "bad-choice-id":
        scenes["b"]["choices"][0]["id"] = "Back Home"
    elif change == "no-label":
        del scenes["b"]["choices"][0]["label"]
    elif change == "bad-set":
        scenes["b"]["choices"][0]["set"] = {"x": [1, 2]}
    elif change == "premium-not-bool":
        scenes["b"]["premium"] = "yes"
    elif change == "text-too-long":
        scenes["b"]["text"] = "x" * 5000
    return data


@pytest.mark.parametrize(
    ("change", "scene", "fragment"),
    [
        ("missing-target", "b", "'nowhere', which does not exist"),
        ("unreachable-premium", "p", "premium scene cannot be reached"),
        ("unreachable", "lost", "cannot be reached"),
        ("duplicate-choice-id", "b", "already used in scene 'a'"),
        ("unknown-key", "b", "unknown key 'txt'"),
        ("no-text", "b", "no text"),
        ("bad-choice-id", "b", "choice id 'Back Home'"),
        ("no-label", "b", "needs a label"),
        ("bad-set", "b", "'set' must map"),
        ("premium-not-bool", "b", "'premium' must be true or false"),
        ("text-too-long", "b", "Telegram message"),
    ],
)
def test_a_broken_story_is_refused_naming_the_scene(change: str, scene: str, fragment: str) -> None:
    with pytest.raises(StoryError) as caught:
        parse_story(_broken(change), source="story.toml")
    assert caught.value.scene == scene
    assert f"scene {scene!r}" in str(caught.value)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("story.toml: ")


def test_a_missing_start_scene_is_refused() -> None:
    data = _valid()
    data["start"] = "prologue"
    with pytest.raises(StoryError, match="the start scene 'prologue' does not exist") as caught:
        parse_story(data)
    assert caught.value.scene == "prologue"


def test_a_premium_start_scene_is_refused() -> None:
    data = _valid()
    data["scenes"]["a"]["premium"] = True
    with pytest.raises(StoryError, match="start scene cannot be premium"):
        parse_story(data)


@pytest.mark.parametrize(
    "data",
    [{}, {"start": "a"}, {"start": "a", "scenes": {}}, {"start": "a", "scenes": [], "x": 1}],
)
def test_a_story_without_scenes_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(StoryError):
        parse_story(data)


def test_a_story_file_with_bad_toml_or_missing_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("start = \n", encoding="utf-8")
    with pytest.raises(StoryError, match="not valid TOML") as caught:
        load_story(bad)
    assert caught.value.source == str(bad)
    with pytest.raises(StoryError, match="cannot read the story file"):
        load_story(tmp_path / "missing.toml")


def test_a_story_file_is_loaded_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "story.toml"
    path.write_text(
        'start = "a"\n[scenes.a]\ntext = "Only"\n',
        encoding="utf-8",
    )
    story = load_story(path)
    assert list(story.scenes) == ["a"] and story.start_scene.is_ending
