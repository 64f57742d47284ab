"""Inline keyboards of the novel: one button per choice, the choice id in the callback."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from app.story import Scene

__all__ = ["ChoiceCallback", "scene_keyboard"]


class ChoiceCallback(CallbackData, prefix="choice"):
    """``choice:<choice id>``; choice ids are unique in the story."""

    id: str


def scene_keyboard(scene: Scene) -> InlineKeyboardMarkup | None:
    if not scene.choices:
        return None
    builder = InlineKeyboardBuilder()
    for choice in scene.choices:
        builder.button(text=choice.label, callback_data=ChoiceCallback(id=choice.id))
    builder.adjust(1)
    return builder.as_markup()
