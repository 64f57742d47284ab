"""The story as data: ``story.toml`` in this package, loaded and validated at start."""

from app.story.loader import StoryError, load_story, parse_story
from app.story.model import Choice, Scene, Story, StoryValue

__all__ = ["Choice", "Scene", "Story", "StoryError", "StoryValue", "load_story", "parse_story"]
