"""Load and validate the story file; a broken story is refused at start, naming the scene.

::

    story = load_story()                 # the story.toml shipped in this package
    story = load_story("my_story.toml")  # or another file
    story = parse_story({...})           # or data already parsed

Checks: the top level has ``start`` and ``scenes``; the start scene exists and is not
premium; every scene has a text; every choice has a unique ``id``, a ``label`` and a
``target`` that exists; only known keys are used (typos fail loudly); every scene, premium
ones included, can be reached from the start scene.
"""

from __future__ import annotations

import re
import tomllib
from collections import deque
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from app.story.model import Choice, Scene, Story, StoryValue

__all__ = [
    "CHOICE_ID_MAX_LENGTH",
    "DEFAULT_STORY_FILE",
    "LABEL_MAX_LENGTH",
    "TEXT_MAX_LENGTH",
    "StoryError",
    "load_story",
    "parse_story",
]

DEFAULT_STORY_FILE = "story.toml"
TEXT_MAX_LENGTH = 4096  # one Telegram message
LABEL_MAX_LENGTH = 64
# Telegram's callback_data holds 64 bytes; 32 leave room for the bot's prefix.
CHOICE_ID_MAX_LENGTH = 32
SCENE_ID_MAX_LENGTH = 64  # NovelState.scene is a String(64)

_SCENE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_CHOICE_ID = re.compile(r"^[a-z0-9_]+$")
_TOP_KEYS = frozenset({"title", "start", "scenes"})
_SCENE_KEYS = frozenset({"text", "choices", "premium"})
_CHOICE_KEYS = frozenset({"id", "label", "target", "set"})


class StoryError(ValueError):
    """The story file is invalid. ``scene`` names the scene at fault (None: the whole file)."""

    def __init__(self, reason: str, *, source: str, scene: str | None = None) -> None:
        where = f"{source}: scene {scene!r}" if scene is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.scene = scene
        self.reason = reason


def load_story(path: str | Path | None = None) -> Story:
    """Read and validate a story TOML file (default: the ``story.toml`` of this package)."""
    if path is None:
        resource = resources.files("app.story").joinpath(DEFAULT_STORY_FILE)
        source = f"app/story/{DEFAULT_STORY_FILE}"
        raw = resource.read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise StoryError(f"cannot read the story file: {exc.strerror}", source=source) from exc
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise StoryError(f"not valid TOML: {exc}", source=source) from exc
    return parse_story(data, source=source)


def parse_story(data: Mapping[str, Any], *, source: str = "<story>") -> Story:
    """Validate already-parsed story data and build the :class:`Story`."""
    if not isinstance(data, Mapping):
        raise StoryError("the story must be a table", source=source)
    _no_unknown_keys(data, _TOP_KEYS, source=source, what="the top level")
    title = data.get("title", "")
    if not isinstance(title, str):
        raise StoryError("'title' must be a string", source=source)
    raw_scenes = data.get("scenes")
    if not isinstance(raw_scenes, Mapping) or not raw_scenes:
        raise StoryError("there are no scenes; add [scenes.<id>] tables", source=source)

    scenes: dict[str, Scene] = {}
    choices: dict[str, tuple[str, Choice]] = {}
    for scene_id, raw in raw_scenes.items():
        scene = _parse_scene(scene_id, raw, source=source)
        for choice in scene.choices:
            if choice.id in choices:
                other = choices[choice.id][0]
                raise StoryError(
                    f"choice id {choice.id!r} is already used in scene {other!r}; "
                    "choice ids must be unique in the story",
                    source=source,
                    scene=scene_id,
                )
            choices[choice.id] = (scene_id, choice)
        scenes[scene_id] = scene

    start = data.get("start")
    if not isinstance(start, str) or not start:
        raise StoryError("'start' must name the first scene", source=source)
    if start not in scenes:
        raise StoryError(f"the start scene {start!r} does not exist", source=source, scene=start)
    if scenes[start].premium:
        raise StoryError("the start scene cannot be premium", source=source, scene=start)

    for scene in scenes.values():
        for choice in scene.choices:
            if choice.target not in scenes:
                raise StoryError(
                    f"choice {choice.id!r} leads to {choice.target!r}, which does not exist",
                    source=source,
                    scene=scene.id,
                )

    reachable = _reachable(scenes, start)
    for scene in scenes.values():
        if scene.id not in reachable:
            kind = "premium scene" if scene.premium else "scene"
            raise StoryError(
                f"this {kind} cannot be reached from the start scene {start!r}; "
                "add a choice that leads to it or remove it",
                source=source,
                scene=scene.id,
            )

    return Story(
        title=title,
        start=start,
        scenes=MappingProxyType(scenes),
        choices=MappingProxyType(choices),
    )


def _parse_scene(scene_id: object, raw: object, *, source: str) -> Scene:
    if not isinstance(scene_id, str) or not _SCENE_ID.match(scene_id):
        raise StoryError(
            "a scene id must be lowercase letters, digits and '_', starting with a letter",
            source=source,
            scene=str(scene_id),
        )
    if len(scene_id) > SCENE_ID_MAX_LENGTH:
        raise StoryError(
            f"the scene id is longer than {SCENE_ID_MAX_LENGTH} characters",
            source=source,
            scene=scene_id,
        )
    if not isinstance(raw, Mapping):
        raise StoryError("a scene must be a table", source=source, scene=scene_id)
    _no_unknown_keys(raw, _SCENE_KEYS, source=source, what="a scene", scene=scene_id)
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise StoryError("the scene has no text", source=source, scene=scene_id)
    if len(text) > TEXT_MAX_LENGTH:
        raise StoryError(
            f"the text has {len(text)} characters; a Telegram message holds {TEXT_MAX_LENGTH}",
            source=source,
            scene=scene_id,
        )
    premium = raw.get("premium", False)
    if not isinstance(premium, bool):
        raise StoryError("'premium' must be true or false", source=source, scene=scene_id)
    raw_choices = raw.get("choices", [])
    if not isinstance(raw_choices, list):
        raise StoryError(
            "'choices' must be a list of tables ([[scenes.<id>.choices]])",
            source=source,
            scene=scene_id,
        )
    choices = tuple(_parse_choice(item, scene_id, source=source) for item in raw_choices)
    return Scene(id=scene_id, text=text, choices=choices, premium=premium)


def _parse_choice(raw: object, scene_id: str, *, source: str) -> Choice:
    if not isinstance(raw, Mapping):
        raise StoryError("a choice must be a table", source=source, scene=scene_id)
    _no_unknown_keys(raw, _CHOICE_KEYS, source=source, what="a choice", scene=scene_id)
    choice_id = raw.get("id")
    if (
        not isinstance(choice_id, str)
        or not _CHOICE_ID.match(choice_id)
        or len(choice_id) > CHOICE_ID_MAX_LENGTH
    ):
        raise StoryError(
            f"choice id {choice_id!r} must be 1 to {CHOICE_ID_MAX_LENGTH} lowercase letters, "
            "digits or '_'",
            source=source,
            scene=scene_id,
        )
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX_LENGTH:
        raise StoryError(
            f"choice {choice_id!r} needs a label of 1 to {LABEL_MAX_LENGTH} characters",
            source=source,
            scene=scene_id,
        )
    target = raw.get("target")
    if not isinstance(target, str) or not target:
        raise StoryError(f"choice {choice_id!r} has no target scene", source=source, scene=scene_id)
    values = raw.get("set", {})
    if not isinstance(values, Mapping) or not all(
        isinstance(key, str) and isinstance(value, StoryValue) for key, value in values.items()
    ):
        raise StoryError(
            f"choice {choice_id!r}: 'set' must map names to strings, numbers or booleans",
            source=source,
            scene=scene_id,
        )
    return Choice(id=choice_id, label=label, target=target, set=MappingProxyType(dict(values)))


def _no_unknown_keys(
    table: Mapping[str, Any],
    allowed: frozenset[str],
    *,
    source: str,
    what: str,
    scene: str | None = None,
) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise StoryError(
            f"unknown key {unknown[0]!r} in {what}; allowed: {', '.join(sorted(allowed))}",
            source=source,
            scene=scene,
        )


def _reachable(scenes: Mapping[str, Scene], start: str) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for choice in scenes[queue.popleft()].choices:
            if choice.target not in seen:
                seen.add(choice.target)
                queue.append(choice.target)
    return seen
