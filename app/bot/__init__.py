"""The bot: aiogram routers of the novel, referrals and payments."""

from __future__ import annotations

from aiogram import Dispatcher

from app.bot import payments, referrals, start, story
from app.story import Story

__all__ = ["build_dispatcher"]


def build_dispatcher(story_data: Story) -> Dispatcher:
    """A fresh Dispatcher with the app's routers; ``story`` reaches handlers as data."""
    dispatcher = Dispatcher(story=story_data)
    dispatcher.include_routers(
        start.build_router(),
        story.build_router(),
        referrals.build_router(),
        payments.build_router(),
    )
    return dispatcher
