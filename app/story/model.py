"""The story as immutable data: a :class:`Story` of :class:`Scene` objects and their
:class:`Choice` buttons. Built and validated by :mod:`app.story.loader`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Choice", "Scene", "Story", "StoryValue"]

StoryValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Choice:
    """A button: ``id`` is unique in the story and comes back in the callback."""

    id: str
    label: str
    target: str
    set: Mapping[str, StoryValue] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Scene:
    id: str
    text: str
    choices: tuple[Choice, ...] = ()
    premium: bool = False

    @property
    def is_ending(self) -> bool:
        """True when the scene offers no choice."""
        return not self.choices


@dataclass(frozen=True, slots=True)
class Story:
    """A validated story: every target exists and every scene is reachable from ``start``."""

    title: str
    start: str
    scenes: Mapping[str, Scene]
    # choice id -> (scene id, choice); built by the loader.
    choices: Mapping[str, tuple[str, Choice]]

    @property
    def start_scene(self) -> Scene:
        return self.scenes[self.start]

    def scene(self, scene_id: str) -> Scene:
        """The scene ``scene_id``; ``KeyError`` if the story has none of that name."""
        return self.scenes[scene_id]

    def find_choice(self, choice_id: str) -> tuple[Scene, Choice] | None:
        """The scene offering ``choice_id`` and the choice itself, or None if unknown."""
        found = self.choices.get(choice_id)
        if found is None:
            return None
        scene_id, choice = found
        return self.scenes[scene_id], choice

    @property
    def premium_scenes(self) -> tuple[Scene, ...]:
        return tuple(scene for scene in self.scenes.values() if scene.premium)
