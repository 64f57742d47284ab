"""The bot: aiogram routers of the novel, referrals and payments."""

from __future__ import annotations

from aiogram import Dispatcher

from app.bot import conversation, payments, reachability, referrals, start, story
from app.bot.edge import setup_edge
from app.story import Story
from db_manager.telegram.fsm import SqlAlchemyStorage

__all__ = ["build_dispatcher"]


def build_dispatcher(story_data: Story) -> Dispatcher:
    """A fresh Dispatcher with the app's routers; ``story`` reaches handlers as data."""
    # FSM state in the update's transaction; setup_dispatcher binds it to the uow_factory.
    dispatcher = Dispatcher(story=story_data, storage=SqlAlchemyStorage())
    setup_edge(dispatcher)
    referrals.BotUsername().register(dispatcher)  # getMe once per process, for /ref
    dispatcher.include_routers(
        conversation.build_router(),  # first: its state filters see text before the story
        start.build_router(),
        story.build_router(),
        referrals.build_router(),
        payments.build_router(),
        reachability.build_router(),
    )
    return dispatcher
