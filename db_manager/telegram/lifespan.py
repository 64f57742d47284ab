"""The process's one Bot and Dispatcher: built in the app's lifespan, closed at shutdown.

No FastAPI import: the lifespan works with any ASGI app that has a ``state`` (FastAPI,
Starlette), and :func:`register_webhook` needs only aiogram.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager.drain import Drain
from db_manager.errors import ConfigError, DatabaseManagerError
from db_manager.notify import Notifications
from db_manager.telegram.inbox import Inbox
from db_manager.telegram.middleware import setup_dispatcher, teardown_dispatcher
from db_manager.telegram.settings import TelegramSettings
from db_manager.uow import UnitOfWorkFactory

__all__ = [
    "AppWithState",
    "BackgroundWork",
    "WebhookRuntime",
    "build_bot",
    "register_webhook",
    "telegram_lifespan",
]

log = structlog.get_logger("db_manager.telegram")


class AppWithState(Protocol):
    """An ASGI application with Starlette's ``app.state`` (FastAPI's and Starlette's apps)."""

    @property
    def state(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class WebhookRuntime:
    """What the webhook route needs, kept on ``app.state.telegram``."""

    bot: Bot
    dispatcher: Dispatcher
    secret: bytes
    # Bound of one update's processing by the webhook route; None: unbounded.
    processing_timeout: float | None = None
    # In inbox mode the route only stores the update here (see db_manager.telegram.inbox).
    inbox: Inbox | None = None
    # The process's drain state (``app.state.drain``): updates arriving meanwhile get 503.
    drain: Drain | None = None


def build_bot(
    settings: TelegramSettings, *, session: BaseSession | None = None, **bot_kwargs: Any
) -> Bot:
    """The Bot of ``settings``: its token, talking to ``[bot] api_server`` when set.

    ``session`` (a test's recording session, a tuned ``AiohttpSession``) gets the same
    server. Every part of the Telegram side builds its Bot here: the webhook's lifespan,
    webhook registration, the inbox workers and the outbox sender all reach one server.
    """
    if settings.token is None:
        raise ConfigError("[bot] token is not set")
    if settings.api_server is not None:
        server = TelegramAPIServer.from_base(settings.api_server, is_local=settings.api_is_local)
        if session is None:
            session = AiohttpSession(api=server)
        else:
            session.api = server
    return Bot(settings.token.get_secret_value(), session=session, **bot_kwargs)


def telegram_lifespan(
    settings: TelegramSettings,
    dispatcher: Dispatcher,
    *,
    session: BaseSession | None = None,
    bot_kwargs: dict[str, Any] | None = None,
    outbox: Any = None,
    on_forbidden: Callable[[int, str], Awaitable[None]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that builds the process's one Bot, wires the dispatcher and closes both.

    Nest it inside :func:`db_manager.fastapi.database_lifespan`: it takes the
    ``uow_factory`` from ``app.state``, so HTTP and bot share one factory. With no token the
    app still starts; the webhook answers 404 and the log says the bot is off. Setting the
    webhook is not done here (every worker would do it): see :func:`register_webhook`.

    With ``[bot] processing = "inbox"`` the webhook only stores updates, and this process
    runs ``[bot] workers`` inbox workers (0: none; run :func:`~db_manager.telegram.worker.
    run_worker` elsewhere), woken by LISTEN/NOTIFY on PostgreSQL. ``app.state.drain`` (a
    :class:`~db_manager.drain.Drain`), when the app keeps one, stops them claiming at the
    start of the drain; at shutdown they get what is left of ``[bot] drain_timeout``.
    ``outbox`` (e.g. :class:`~db_manager.telegram.outbox.Outbox`) gives handlers an
    ``outbox`` and receives the methods they return in inbox mode; with ``[bot]
    outbox_sender`` (the default) this process also runs an
    :class:`~db_manager.telegram.sender.OutboxSender`, which awaits
    ``on_forbidden(chat_id, description)`` after a 403 (the user blocked the bot).
    """

    @asynccontextmanager
    async def lifespan(app: AppWithState) -> AsyncIterator[None]:
        if settings.token is None or settings.webhook_secret is None:
            app.state.telegram = None
            log.info("bot is off: no [bot] token configured; the webhook answers 404")
            yield
            return
        uow_factory: UnitOfWorkFactory[Any] | None = getattr(app.state, "uow_factory", None)
        if uow_factory is None:
            raise DatabaseManagerError(
                "telegram_lifespan needs app.state.uow_factory; nest it inside database_lifespan"
            )
        bot = build_bot(settings, session=session, **(bot_kwargs or {}))
        setup_dispatcher(dispatcher, uow_factory, outbox=outbox)
        drain: Drain | None = getattr(app.state, "drain", None)
        work = BackgroundWork(
            bot,
            dispatcher,
            uow_factory,
            app.state.engine,
            settings,
            inbox=settings.processing == "inbox",
            outbox=outbox,
            on_forbidden=on_forbidden,
        )
        inbox = work.inbox
        if drain is not None:
            drain.on_start(work.stop_claiming)
        app.state.telegram = WebhookRuntime(
            bot=bot,
            dispatcher=dispatcher,
            secret=settings.webhook_secret.get_secret_value().encode("ascii"),
            processing_timeout=settings.processing_timeout,
            inbox=inbox,
            drain=drain,
        )
        # What aiogram's own webhook setup passes to startup/shutdown handlers.
        workflow = {**dispatcher.workflow_data, "app": app, "bot": bot, "bots": [bot]}
        workflow["dispatcher"] = dispatcher
        try:
            started = False
            try:
                await dispatcher.emit_startup(**workflow)
                started = True
                await work.start()
                log.info(
                    "bot is on",
                    bot_id=bot.id,
                    webhook_path=settings.webhook_path,
                    processing=settings.processing,
                )
                yield
            finally:
                left = settings.drain_timeout
                if drain is not None:
                    left = drain.remaining(settings.drain_timeout)
                await work.stop(within=left)
                if started:
                    await dispatcher.emit_shutdown(**workflow)
        finally:
            app.state.telegram = None
            teardown_dispatcher(dispatcher)
            await bot.session.close()

    return lifespan


class BackgroundWork:
    """The queue work of one process: inbox workers and the outbox sender, one listener.

    ``inbox``: the webhook stores updates (the :attr:`inbox` exists) and ``workers`` of
    them (default ``[bot] workers``) run here. ``outbox`` given and ``[bot] outbox_sender``
    on (or ``sender=True``): an :class:`~db_manager.telegram.sender.OutboxSender` runs here.
    One :class:`~db_manager.notify.Notifications` connection serves both.
    """

    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        uow_factory: UnitOfWorkFactory[Any],
        engine: AsyncEngine,
        settings: TelegramSettings,
        *,
        inbox: bool,
        outbox: Any = None,
        on_forbidden: Callable[[int, str], Awaitable[None]] | None = None,
        workers: int | None = None,
        sender: bool | None = None,
    ) -> None:
        self.settings = settings
        self.workers = settings.workers if workers is None else workers
        run_sender = outbox is not None and (settings.outbox_sender if sender is None else sender)
        needed = (inbox and self.workers > 0) or run_sender
        self.notifications = Notifications(engine) if needed else None
        self.inbox: Inbox | None = None
        if inbox:
            self.inbox = Inbox(
                bot,
                dispatcher,
                uow_factory,
                settings,
                notifications=self.notifications,
                outbox=outbox,
            )
        self.sender: Any = None
        if run_sender:
            from db_manager.telegram.sender import OutboxSender

            self.sender = OutboxSender(
                bot,
                engine,
                settings,
                notifications=self.notifications,
                on_forbidden=on_forbidden,
            )

    async def start(self) -> None:
        if self.notifications is not None:
            await self.notifications.start()
        if self.inbox is not None and self.workers > 0:
            await self.inbox.start(self.workers)
        if self.sender is not None:
            await self.sender.start()

    def stop_claiming(self) -> None:
        """At the start of a drain: no new updates are claimed (sends go on until stop)."""
        if self.inbox is not None:
            self.inbox.stop_claiming()

    async def stop(self, within: float) -> None:
        """Updates and sends in flight get ``within`` seconds, then roll back to pending."""
        stopping = []
        if self.inbox is not None:
            stopping.append(self.inbox.stop(within=within))
        if self.sender is not None:
            stopping.append(self.sender.stop(within))
        try:
            await asyncio.gather(*stopping)
        finally:
            if self.notifications is not None:
                await self.notifications.stop()


async def register_webhook(bot: Bot, dispatcher: Dispatcher, settings: TelegramSettings) -> bool:
    """Point Telegram at ``settings.webhook_url`` with the secret and the used update types.

    Idempotent (Telegram's ``setWebhook`` replaces the previous one); run it once per deploy,
    not in every worker's startup.
    """
    if settings.webhook_url is None or settings.webhook_secret is None:
        raise ConfigError("[bot] webhook_url and webhook_secret are needed to set the webhook")
    return await bot.set_webhook(
        url=settings.webhook_url,
        secret_token=settings.webhook_secret.get_secret_value(),
        allowed_updates=dispatcher.resolve_used_update_types(),
        drop_pending_updates=settings.drop_pending_updates,
    )
