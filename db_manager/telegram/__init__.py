"""The Telegram side (extra ``aiogram``): a UnitOfWork per update, exactly once.

::

    from db_manager.telegram import TelegramSettings, setup_dispatcher, telegram_lifespan
    from db_manager.telegram.webhook import telegram_webhook_router   # extra ``fastapi``

Modules, one concept each:

* :mod:`~db_manager.telegram.settings` - the ``[bot]`` section;
* :mod:`~db_manager.telegram.middleware` - the per-update middleware and ``setup_dispatcher``;
* :mod:`~db_manager.telegram.store` - the update-dedup table ``db_manager__telegram_updates``;
* :mod:`~db_manager.telegram.lifespan` - the Bot/Dispatcher lifespan and webhook registration;
* :mod:`~db_manager.telegram.fsm` - ``SqlAlchemyStorage``, aiogram FSM state in the update's
  transaction (table ``db_manager__telegram_fsm``, added only when it is imported);
* :mod:`~db_manager.telegram.webhook` - the FastAPI webhook route (the only one importing
  FastAPI).

Importing this package adds ``db_manager__telegram_updates`` to ``db_manager.Base.metadata``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db_manager._extras import require

require("db_manager.telegram", "aiogram", "aiogram")

from db_manager.telegram.current import bind_unit_of_work, current_unit_of_work
from db_manager.telegram.lifespan import (
    WebhookRuntime,
    build_bot,
    register_webhook,
    telegram_lifespan,
)
from db_manager.telegram.middleware import (
    UOW_FACTORY_KEY,
    UOW_KEY,
    UnitOfWorkData,
    UnitOfWorkMiddleware,
    setup_dispatcher,
    teardown_dispatcher,
)
from db_manager.telegram.settings import DEFAULT_WEBHOOK_MAX_BODY, TelegramSettings
from db_manager.telegram.store import DuplicateUpdate, TelegramUpdate, prune_updates

if TYPE_CHECKING:
    from db_manager.telegram.fsm import SqlAlchemyStorage

__all__ = [
    "DEFAULT_WEBHOOK_MAX_BODY",
    "UOW_FACTORY_KEY",
    "UOW_KEY",
    "DuplicateUpdate",
    "SqlAlchemyStorage",
    "TelegramSettings",
    "TelegramUpdate",
    "UnitOfWorkData",
    "UnitOfWorkMiddleware",
    "WebhookRuntime",
    "bind_unit_of_work",
    "build_bot",
    "current_unit_of_work",
    "prune_updates",
    "register_webhook",
    "setup_dispatcher",
    "teardown_dispatcher",
    "telegram_lifespan",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: importing fsm adds its table to Base.metadata, which apps that
    # keep their FSM elsewhere must not get.
    if name == "SqlAlchemyStorage":
        from db_manager.telegram.fsm import SqlAlchemyStorage

        return SqlAlchemyStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
