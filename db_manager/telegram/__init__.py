"""The Telegram side (extra ``aiogram``): a UnitOfWork per update, exactly once.

::

    from db_manager.telegram import TelegramSettings, setup_dispatcher, telegram_lifespan
    from db_manager.telegram.webhook import telegram_webhook_router   # extra ``fastapi``

Modules, one concept each:

* :mod:`~db_manager.telegram.settings` - the ``[bot]`` section;
* :mod:`~db_manager.telegram.middleware` - the per-update middleware and ``setup_dispatcher``;
* :mod:`~db_manager.telegram.store` - the update-dedup table ``db_manager__telegram_updates``;
* :mod:`~db_manager.telegram.inbox` - the durable webhook inbox (``[bot] processing =
  "inbox"``, table ``db_manager__telegram_inbox``) and its workers;
* :mod:`~db_manager.telegram.outbox` - the transactional outbox of Bot API calls and its
  sender (table ``db_manager__telegram_outbox``, added only when it is imported);
* :mod:`~db_manager.telegram.worker` - ``run_worker``, a process that only applies the inbox;
* :mod:`~db_manager.telegram.lifespan` - the Bot/Dispatcher lifespan and webhook registration;
* :mod:`~db_manager.telegram.fsm` - ``SqlAlchemyStorage``, aiogram FSM state in the update's
  transaction (table ``db_manager__telegram_fsm``, added only when it is imported);
* :mod:`~db_manager.telegram.webhook` - the FastAPI webhook route (the only one importing
  FastAPI).

Importing this package adds ``db_manager__telegram_updates`` and ``db_manager__telegram_inbox``
to ``db_manager.Base.metadata``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db_manager._extras import require

require("db_manager.telegram", "aiogram", "aiogram")

from db_manager.telegram.current import bind_unit_of_work, current_unit_of_work
from db_manager.telegram.inbox import (
    Inbox,
    InboxStatus,
    TelegramInboxItem,
    inbox_status,
    purge_done,
    retry_updates,
)
from db_manager.telegram.lifespan import (
    BackgroundWork,
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
from db_manager.telegram.worker import run_worker

if TYPE_CHECKING:
    from db_manager.telegram.fsm import SqlAlchemyStorage
    from db_manager.telegram.outbox import Outbox
    from db_manager.telegram.sender import OutboxSender

__all__ = [
    "DEFAULT_WEBHOOK_MAX_BODY",
    "UOW_FACTORY_KEY",
    "UOW_KEY",
    "BackgroundWork",
    "DuplicateUpdate",
    "Inbox",
    "InboxStatus",
    "Outbox",
    "OutboxSender",
    "SqlAlchemyStorage",
    "TelegramInboxItem",
    "TelegramSettings",
    "TelegramUpdate",
    "UnitOfWorkData",
    "UnitOfWorkMiddleware",
    "WebhookRuntime",
    "bind_unit_of_work",
    "build_bot",
    "current_unit_of_work",
    "inbox_status",
    "prune_updates",
    "purge_done",
    "register_webhook",
    "retry_updates",
    "run_worker",
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
    if name == "Outbox":  # the outbox table, only for apps that use it
        from db_manager.telegram.outbox import Outbox

        return Outbox
    if name == "OutboxSender":
        from db_manager.telegram.sender import OutboxSender

        return OutboxSender
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
