"""The bot: aiogram routers of the novel, referrals and payments."""

from __future__ import annotations

from aiogram import Dispatcher

__all__ = ["build_dispatcher"]


def build_dispatcher() -> Dispatcher:
    """A fresh Dispatcher with the app's routers (one per process, built in create_app)."""
    dispatcher = Dispatcher()
    return dispatcher
