"""A UnitOfWork per update: the aiogram middleware on ``dispatcher.update``.

::

    dispatcher = Dispatcher()
    setup_dispatcher(dispatcher, database.uow_factory)

    @router.message(CommandStart())
    async def start(message: Message, uow: UnitOfWork) -> None:
        uow.session.add(Visit(user_id=message.from_user.id))
        # committed when the handler returns, rolled back if it raises

The middleware puts the process's ``uow_factory`` into handler data under
``"uow_factory"`` and a lazy per-update unit of work under ``"uow"``: no connection at all if
the handler never touches it. Updates that use the database are recorded in
``db_manager__telegram_updates`` in the same transaction, so a redelivered update is not
applied twice. aiogram only: it serves aiogram's polling, its aiohttp webhook server and our
FastAPI webhook route (:mod:`db_manager.telegram.webhook`) alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.dispatcher.middlewares.data import MiddlewareData
from aiogram.exceptions import (
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import TelegramObject, Update

from db_manager.errors import DatabaseUnavailable, as_unavailable, is_connection_error
from db_manager.telegram.current import bind_unit_of_work, nest_fsm
from db_manager.telegram.store import DuplicateUpdate, deduplicate_update
from db_manager.uow import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "INBOX_UOW_KEY",
    "OUTBOX_KEY",
    "OUTCOME_KEY",
    "UOW_FACTORY_KEY",
    "UOW_KEY",
    "Outcome",
    "UnitOfWorkData",
    "UnitOfWorkMiddleware",
    "retry_after",
    "setup_dispatcher",
    "teardown_dispatcher",
    "transient_failure",
]

log = structlog.get_logger("db_manager.telegram")

UOW_KEY = "uow"
UOW_FACTORY_KEY = "uow_factory"
OUTBOX_KEY = "outbox"
# Where a caller of ``feed_update`` (the webhook route) passes an :class:`Outcome`.
OUTCOME_KEY = "_db_manager_outcome"
# Where an inbox worker passes the unit of work that claimed the update: the handler runs in
# it (the worker commits it together with "done"), and no dedup record is needed.
INBOX_UOW_KEY = "_db_manager_inbox_uow"


class UnitOfWorkData(MiddlewareData, total=False):
    """Handler data added by :class:`UnitOfWorkMiddleware`."""

    uow: UnitOfWork
    uow_factory: UnitOfWorkFactory[Any]


class Outcome:
    """What the middleware reports back to the caller of ``feed_update`` about one update.

    ``transient`` is the first transient failure (see :func:`transient_failure`) that left
    the handler, kept even when an aiogram error handler of the app swallowed it: the
    update was rolled back and must be retried, not acknowledged. ``failure`` is the first
    failure of any kind: an inbox worker must not commit an update whose handler failed.
    """

    __slots__ = ("failure", "transient")

    def __init__(self) -> None:
        self.transient: Exception | None = None
        self.failure: Exception | None = None


def transient_failure(exc: BaseException) -> Exception | None:
    """The transient failure ``exc`` stands for, or None if it is permanent.

    Transient (a retry can succeed): the database unavailable (``DatabaseUnavailable``, or a
    SQLAlchemy error :func:`~db_manager.errors.is_connection_error` accepts, returned
    wrapped), and the Bot API unreachable, answering 5xx or 429 (``TelegramNetworkError``
    except ``TelegramEntityTooLarge``, ``TelegramServerError``, ``TelegramRetryAfter``).
    Permanent: everything else, a Bot API 400 or 403 included.
    """
    if isinstance(exc, DatabaseUnavailable | TelegramRetryAfter | TelegramServerError):
        return exc
    if isinstance(exc, TelegramNetworkError) and not isinstance(exc, TelegramEntityTooLarge):
        return exc
    if isinstance(exc, Exception) and is_connection_error(exc):
        return as_unavailable(exc)
    return None


def retry_after(failure: Exception) -> int:
    """Seconds to announce in ``Retry-After``: what Telegram asked for after a 429, the
    error's own ``retry_after`` for the database, else 1."""
    if isinstance(failure, TelegramRetryAfter):
        return max(1, int(failure.retry_after))
    if isinstance(failure, DatabaseUnavailable):
        return failure.retry_after
    return 1


class UnitOfWorkMiddleware(BaseMiddleware):
    """A lazy UnitOfWork per update, committed when the handler returns."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory[Any],
        *,
        deduplicate: bool = True,
        outbox: Callable[[UnitOfWork, int], Any] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.deduplicate = deduplicate
        # Called with the update's unit of work and the bot's id; the result reaches
        # handlers as ``outbox`` (e.g. db_manager.telegram.outbox.Outbox).
        self.outbox = outbox

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        data[UOW_FACTORY_KEY] = self.uow_factory
        claimed: UnitOfWork | None = data.get(INBOX_UOW_KEY)
        if claimed is not None:
            return await self._in_claimed(claimed, handler, event, data)
        bot: Bot | None = data.get("bot")
        record = None
        try:
            async with self.uow_factory() as uow:
                if self.deduplicate and bot is not None and isinstance(event, Update):
                    record = deduplicate_update(uow, bot.id, event.update_id)
                data[UOW_KEY] = uow
                if self.outbox is not None and bot is not None:
                    data[OUTBOX_KEY] = self.outbox(uow, bot.id)
                with bind_unit_of_work(uow):  # FSM storage calls of this update run on uow
                    result = await handler(event, data)
                if record is not None and record.duplicate:
                    # The handler swallowed DuplicateUpdate; still refuse to commit.
                    raise DuplicateUpdate(record.bot_id, record.update_id)
                return result
        except DuplicateUpdate as exc:
            log.info("duplicate update skipped", update_id=exc.update_id, bot_id=exc.bot_id)
            return None
        except Exception as exc:
            # Tell the webhook route even if an aiogram error handler swallows the exception:
            # an outage (database or Bot API) must be answered 503 so that Telegram retries.
            _report(data, exc)
            raise

    async def _in_claimed(
        self,
        uow: UnitOfWork,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        # An inbox worker's unit of work: entered, committed and closed by the worker.
        data[UOW_KEY] = uow
        bot: Bot | None = data.get("bot")
        if self.outbox is not None and bot is not None:
            data[OUTBOX_KEY] = self.outbox(uow, bot.id)
        try:
            with bind_unit_of_work(uow):
                return await handler(event, data)
        except Exception as exc:
            _report(data, exc)
            raise


def _report(data: dict[str, Any], exc: Exception) -> None:
    outcome = data.get(OUTCOME_KEY)
    if isinstance(outcome, Outcome):
        if outcome.failure is None:
            outcome.failure = exc
        if outcome.transient is None:
            outcome.transient = transient_failure(exc)


def setup_dispatcher(
    dispatcher: Dispatcher,
    uow_factory: UnitOfWorkFactory[Any],
    *,
    deduplicate: bool = True,
    outbox: Callable[[UnitOfWork, int], Any] | None = None,
) -> UnitOfWorkMiddleware:
    """Register the middleware on ``dispatcher.update`` and return it.

    A middleware left by an earlier setup (an app started twice with one Dispatcher, as in
    tests or a restarted lifespan) is replaced, not nested: the stale one would hand
    handlers the ``uow_factory`` of a database that was disposed. With ``outbox`` (e.g.
    :class:`~db_manager.telegram.outbox.Outbox`) handlers get ``outbox``: Bot API calls
    enqueued in the update's transaction.
    """
    teardown_dispatcher(dispatcher)
    middleware = UnitOfWorkMiddleware(uow_factory, deduplicate=deduplicate, outbox=outbox)
    dispatcher.update.middleware(middleware)
    nest_fsm(dispatcher, uow_factory)  # a UnitOfWorkStorage reads state inside the unit of work
    return middleware


def teardown_dispatcher(dispatcher: Dispatcher) -> None:
    """Remove what :func:`setup_dispatcher` registered."""
    for middleware in list(dispatcher.update.middleware):
        if isinstance(middleware, UnitOfWorkMiddleware):
            dispatcher.update.middleware.unregister(middleware)
