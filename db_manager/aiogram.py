"""aiogram 3 adapter: a UnitOfWork per update, and a FastAPI webhook route that serves it.

::

    dispatcher = Dispatcher()
    dispatcher.include_router(my_router)

    app = FastAPI(lifespan=...)  # database_lifespan(...) then telegram_lifespan(...), nested
    app.include_router(telegram_webhook_router())

    @my_router.message(CommandStart())
    async def start(message: Message, uow: UnitOfWork) -> SendMessage:
        uow.session.add(Visit(user_id=message.from_user.id))
        return message.answer("hi")   # sent as the webhook response, after the commit

The middleware (on ``dispatcher.update.middleware``) puts the process's ``uow_factory``
into handler data under ``"uow_factory"`` and a lazy per-update unit of work under
``"uow"``: committed when the handler returns, rolled back when it raises, and no
connection at all if the handler never touches it. Updates that use the database are
recorded in ``db_manager__telegram_updates`` in the same transaction, so a redelivered
update is not applied twice.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.middlewares.data import MiddlewareData
from aiogram.methods import TelegramMethod
from aiogram.types import TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from sqlalchemy.exc import IntegrityError
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from db_manager.config import SectionSettings
from db_manager.errors import ConfigError, DatabaseManagerError, DatabaseUnavailable, summarize
from db_manager.uow import UnitOfWork, UnitOfWorkFactory
from db_manager.updates import DuplicateUpdate, deduplicate_update

__all__ = [
    "DEFAULT_WEBHOOK_MAX_BODY",
    "SECRET_HEADER",
    "UOW_FACTORY_KEY",
    "UOW_KEY",
    "TelegramSettings",
    "UnitOfWorkData",
    "UnitOfWorkMiddleware",
    "WebhookRuntime",
    "register_webhook",
    "setup_dispatcher",
    "teardown_dispatcher",
    "telegram_lifespan",
    "telegram_webhook_router",
]

log = structlog.get_logger("db_manager.aiogram")

UOW_KEY = "uow"
UOW_FACTORY_KEY = "uow_factory"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET_HEADER_RAW = SECRET_HEADER.lower().encode("latin-1")
DEFAULT_WEBHOOK_MAX_BODY = 1 << 20
_SECRET_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class UnitOfWorkData(MiddlewareData, total=False):
    """Handler data added by :class:`UnitOfWorkMiddleware`."""

    uow: UnitOfWork
    uow_factory: UnitOfWorkFactory[Any]


class UnitOfWorkMiddleware(BaseMiddleware):
    """A lazy UnitOfWork per update, committed when the handler returns."""

    def __init__(self, uow_factory: UnitOfWorkFactory[Any], *, deduplicate: bool = True) -> None:
        self.uow_factory = uow_factory
        self.deduplicate = deduplicate

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        data[UOW_FACTORY_KEY] = self.uow_factory
        bot: Bot | None = data.get("bot")
        record = None
        try:
            async with self.uow_factory() as uow:
                if self.deduplicate and bot is not None and isinstance(event, Update):
                    record = deduplicate_update(uow, bot.id, event.update_id)
                data[UOW_KEY] = uow
                result = await handler(event, data)
                if record is not None and record.duplicate:
                    # The handler swallowed DuplicateUpdate; still refuse to commit.
                    raise DuplicateUpdate(record.bot_id, record.update_id)
                return result
        except DuplicateUpdate as exc:
            log.info("duplicate update skipped", update_id=exc.update_id, bot_id=exc.bot_id)
            return None
        except DatabaseUnavailable as exc:
            # Tell the webhook route even if an aiogram error handler swallows the exception:
            # an outage must be answered 503 so that Telegram retries the update.
            outcome = data.get(_OUTCOME_KEY)
            if isinstance(outcome, _Outcome):
                outcome.unavailable = exc
            raise


_OUTCOME_KEY = "_db_manager_outcome"


class _Outcome:
    """What the middleware reports back to the webhook route about one update."""

    __slots__ = ("unavailable",)

    def __init__(self) -> None:
        self.unavailable: DatabaseUnavailable | None = None


def setup_dispatcher(
    dispatcher: Dispatcher, uow_factory: UnitOfWorkFactory[Any], *, deduplicate: bool = True
) -> UnitOfWorkMiddleware:
    """Register the middleware on ``dispatcher.update`` and return it.

    A middleware left by an earlier setup (an app started twice with one Dispatcher, as in
    tests or a restarted lifespan) is replaced, not nested: the stale one would hand
    handlers the ``uow_factory`` of a database that was disposed.
    """
    teardown_dispatcher(dispatcher)
    middleware = UnitOfWorkMiddleware(uow_factory, deduplicate=deduplicate)
    dispatcher.update.middleware(middleware)
    return middleware


def teardown_dispatcher(dispatcher: Dispatcher) -> None:
    """Remove what :func:`setup_dispatcher` registered."""
    for middleware in list(dispatcher.update.middleware):
        if isinstance(middleware, UnitOfWorkMiddleware):
            dispatcher.update.middleware.unregister(middleware)


# -- settings ------------------------------------------------------------------------------


class TelegramSettings(SectionSettings):
    """The ``[bot]`` section (env ``BOT__TOKEN``, ...). No token: the bot is off."""

    section: ClassVar[str] = "bot"
    secret_keys: ClassVar[frozenset[str]] = frozenset({"token", "webhook_secret"})

    token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    webhook_url: str | None = None
    webhook_path: str = "/webhook/telegram"
    max_body_size: int = Field(default=DEFAULT_WEBHOOK_MAX_BODY, ge=1024)
    drop_pending_updates: bool = False

    @field_validator("webhook_secret")
    @classmethod
    def secret_must_match_bot_api_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET_FORMAT.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Bot API rule)")
        return value

    @field_validator("token")
    @classmethod
    def token_must_look_like_a_bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        bot_id, sep, rest = value.get_secret_value().partition(":")
        if not (bot_id.isdigit() and sep and rest):
            raise ValueError("must look like '<bot id>:<secret>' as given by @BotFather")
        return value

    @model_validator(mode="after")
    def webhook_needs_a_secret(self) -> TelegramSettings:
        if self.token is not None and self.webhook_secret is None:
            raise ValueError(
                "webhook_secret is required when token is set (the webhook would accept "
                "anyone's updates); generate one with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None


# -- lifecycle -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookRuntime:
    """What the webhook route needs, kept on ``app.state.telegram``."""

    bot: Bot
    dispatcher: Dispatcher
    secret: bytes


def telegram_lifespan(
    settings: TelegramSettings,
    dispatcher: Dispatcher,
    *,
    session: BaseSession | None = None,
    bot_kwargs: dict[str, Any] | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that builds the process's one Bot, wires the dispatcher and closes both.

    Nest it inside :func:`db_manager.fastapi.database_lifespan`: it takes the
    ``uow_factory`` from ``app.state``, so HTTP and bot share one factory. With no token the
    app still starts; the webhook answers 404 and the log says the bot is off. Setting the
    webhook is not done here (every worker would do it): see :func:`register_webhook`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
        bot = Bot(settings.token.get_secret_value(), session=session, **(bot_kwargs or {}))
        setup_dispatcher(dispatcher, uow_factory)
        app.state.telegram = WebhookRuntime(
            bot=bot,
            dispatcher=dispatcher,
            secret=settings.webhook_secret.get_secret_value().encode("ascii"),
        )
        # What aiogram's own webhook setup passes to startup/shutdown handlers.
        workflow = {**dispatcher.workflow_data, "app": app, "bot": bot, "bots": [bot]}
        workflow["dispatcher"] = dispatcher
        try:
            started = False
            try:
                await dispatcher.emit_startup(**workflow)
                started = True
                log.info("bot is on", bot_id=bot.id, webhook_path=settings.webhook_path)
                yield
            finally:
                if started:
                    await dispatcher.emit_shutdown(**workflow)
        finally:
            app.state.telegram = None
            teardown_dispatcher(dispatcher)
            await bot.session.close()

    return lifespan


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


# -- the webhook route -------------------------------------------------------------------------


def telegram_webhook_router(
    path: str = "/webhook/telegram", *, max_body_size: int = DEFAULT_WEBHOOK_MAX_BODY
) -> APIRouter:
    """A router with ``POST path`` serving the Bot and Dispatcher on ``app.state.telegram``.

    * secret header checked in constant time before the body is read: 401, nothing parsed;
    * body over ``max_body_size``: 413; not JSON or not an Update: 400;
    * the update is processed in the foreground; the answer tells Telegram the truth:
      200 after a commit, after a duplicate, or after a handler error (logged with the update
      id, rolled back; a retry could not help); 503 with ``Retry-After`` when the database is
      unavailable, so Telegram retries and the update is applied once (also when an aiogram
      error handler of the app swallowed the outage);
    * an update of a type this aiogram does not know: 200, nothing to do;
    * a handler that returns an aiogram method gets it sent as the webhook response.
    """
    router = APIRouter()

    async def telegram_webhook(request: Request) -> Response:
        runtime: WebhookRuntime | None = getattr(request.app.state, "telegram", None)
        if runtime is None:
            return JSONResponse({"detail": "The bot is not configured."}, status_code=404)
        if not _secret_matches(request, runtime.secret):
            return JSONResponse({"detail": "Unauthorized."}, status_code=401)
        body = await request.body()
        try:
            update = Update.model_validate_json(body, context={"bot": runtime.bot})
        except ValidationError as exc:
            log.info("rejected webhook body", reason=_validation_reason(exc), size=len(body))
            return JSONResponse({"detail": "The body is not a Telegram Update."}, status_code=400)
        try:
            update.event_type  # noqa: B018 - raises for a type this aiogram does not know
        except UpdateTypeLookupError:
            # Newer than our aiogram: nothing can handle it, and a retry would not change that.
            log.info("update of an unknown type acknowledged", update_id=update.update_id)
            return Response(status_code=200)
        return await _process(runtime, update)

    # A plain Starlette route around a bare ASGI endpoint: the webhook needs neither FastAPI's
    # per-request dependency machinery nor a route-level exception wrapper (it answers every
    # error itself; the app's handlers still wrap it). Together ~15% of the webhook's CPU
    # under load (bench/). The body limit wraps the endpoint, so it survives include_router().
    endpoint = RequestBodyLimitMiddleware(_asgi_endpoint(telegram_webhook), max_body_size)
    router.routes.append(Route(path, endpoint, methods=["POST"], include_in_schema=False))
    return router


def _asgi_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """``handler`` as an ASGI app, without Starlette's per-route exception wrapper."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def _secret_matches(request: Request, expected: bytes) -> bool:
    received = b""
    for name, value in request.scope["headers"]:
        if name == _SECRET_HEADER_RAW:
            received = value
            break
    # Compare bytes: a non-ASCII header is simply unequal, never an error.
    return hmac.compare_digest(received, expected)


def _validation_reason(exc: ValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {"type": "invalid", "loc": ()}
    loc = ".".join(str(part) for part in first.get("loc", ()))
    return f"{first.get('type')} at {loc or 'body'}"


async def _process(runtime: WebhookRuntime, update: Update) -> Response:
    bot, dispatcher = runtime.bot, runtime.dispatcher
    outcome = _Outcome()
    try:
        result = await dispatcher.feed_update(bot, update, **{_OUTCOME_KEY: outcome})
    except DatabaseUnavailable as exc:
        return _unavailable(update, exc)
    except IntegrityError as exc:
        log.error(
            "update rolled back: integrity error",
            update_id=update.update_id,
            error=summarize(exc),
        )
        return Response(status_code=200)
    except Exception as exc:
        log.exception(
            "update handler failed; rolled back and acknowledged",
            update_id=update.update_id,
            error_type=type(exc).__name__,
            error=summarize(exc),
        )
        return Response(status_code=200)
    if outcome.unavailable is not None:
        # An error handler of the app swallowed the outage; the update was not applied.
        return _unavailable(update, outcome.unavailable)
    if result is UNHANDLED or result is None or not isinstance(result, TelegramMethod):
        return Response(status_code=200)
    return await _method_response(bot, result)


def _unavailable(update: Update, exc: DatabaseUnavailable) -> Response:
    log.warning(
        "database unavailable; Telegram will retry the update",
        update_id=update.update_id,
        error=str(exc),
    )
    return JSONResponse(
        {"detail": "The database is unavailable; retry later."},
        status_code=503,
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _method_response(bot: Bot, method: TelegramMethod[Any]) -> Response:
    files: dict[str, Any] = {}
    payload: dict[str, Any] = {"method": method.__api_method__}
    for key, value in method.model_dump(warnings=False).items():
        prepared = bot.session.prepare_value(value, bot=bot, files=files, _dumps_json=False)
        if prepared is not None:
            payload[key] = prepared
    if files:
        # Files cannot ride in a JSON webhook answer: send the method through the bot's
        # session instead (the commit already happened).
        await Dispatcher.silent_call_request(bot=bot, result=method)
        return Response(status_code=200)
    return JSONResponse(payload)
