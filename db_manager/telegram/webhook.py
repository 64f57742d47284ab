"""The FastAPI webhook route: Telegram's POST, checked, parsed and fed to the Dispatcher.

::

    app = FastAPI(lifespan=...)  # database_lifespan(...) then telegram_lifespan(...), nested
    app.include_router(telegram_webhook_router())

    @my_router.message(CommandStart())
    async def start(message: Message, uow: UnitOfWork) -> SendMessage:
        uow.session.add(Visit(user_id=message.from_user.id))
        return message.answer("hi")   # sent as the webhook response, after the commit

The one module of :mod:`db_manager.telegram` that imports FastAPI and Starlette (extra
``fastapi``); the middleware, store and lifespan it serves need aiogram only.
"""

from __future__ import annotations

from db_manager._extras import require

require("db_manager.telegram.webhook", "fastapi", "fastapi")

import asyncio
import functools
import hmac
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
from aiogram import Bot, Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from db_manager.cancellation import run_to_completion
from db_manager.errors import DatabaseUnavailable, loggable, redact, summarize
from db_manager.telegram.inbox import Inbox, inbox_status
from db_manager.telegram.lifespan import WebhookRuntime
from db_manager.telegram.middleware import OUTCOME_KEY, Outcome, retry_after, transient_failure
from db_manager.telegram.settings import DEFAULT_WEBHOOK_MAX_BODY

__all__ = ["SECRET_HEADER", "inbox_readiness", "telegram_webhook_router"]

log = structlog.get_logger("db_manager.telegram")

_T = TypeVar("_T")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET_HEADER_RAW = SECRET_HEADER.lower().encode("latin-1")


def _ok() -> Response:
    """The empty 200 most updates get. A fresh one each time: an ASGI middleware may append
    to the header list a Response sends, so a shared one would carry one request's headers
    (a cookie, say) into the next."""
    return Response(status_code=200)


def telegram_webhook_router(
    path: str = "/webhook/telegram", *, max_body_size: int = DEFAULT_WEBHOOK_MAX_BODY
) -> APIRouter:
    """A router with ``POST path`` serving the Bot and Dispatcher on ``app.state.telegram``.

    * secret header checked in constant time before the body is read: 401, nothing parsed;
    * body over ``max_body_size``: 413; not JSON or not an Update: 400;
    * the update is processed in the foreground; the answer tells Telegram the truth:
      200 after a commit, after a duplicate, or after a permanent failure (a handler bug, an
      integrity conflict, a Bot API 400/403: logged with the update id, rolled back; a retry
      would fail the same way); 503 with ``Retry-After`` after a transient one, so Telegram
      retries and the update is applied once: the database unavailable, the Bot API
      unreachable, 5xx or 429 (``Retry-After`` is then Telegram's ``retry_after``), also when
      an aiogram error handler of the app swallowed the error (see
      :func:`~db_manager.telegram.middleware.transient_failure`);
    * processing is bounded by the runtime's ``processing_timeout`` (``[bot]
      processing_timeout``, 50 s, inside Telegram's 60 s wait): a stuck update is cancelled,
      rolled back and answered 503;
    * an update of a type this aiogram does not know: 200, nothing to do;
    * a handler that returns an aiogram method gets it sent as the webhook response;
    * inbox mode (``[bot] processing = "inbox"``): the update is stored and committed, then
      answered 200 (a duplicate too); if it cannot be stored, 503 with ``Retry-After``;
    * while the process drains (``app.state.drain`` started): 503 with ``Retry-After``, and
      the requests in flight are counted so the drain waits for them.
    """
    router = APIRouter()

    async def telegram_webhook(request: Request) -> Response:
        runtime: WebhookRuntime | None = getattr(request.app.state, "telegram", None)
        if runtime is None:
            return JSONResponse({"detail": "The bot is not configured."}, status_code=404)
        if not _secret_matches(request, runtime.secret):
            return JSONResponse({"detail": "Unauthorized."}, status_code=401)
        drain = runtime.drain
        if drain is None:
            return await _receive(runtime, request)
        if drain.started:
            return _retry_later("The server is shutting down; retry later.", _DRAIN_RETRY_AFTER)
        with drain.track():
            return await _receive(runtime, request)

    async def _receive(runtime: WebhookRuntime, request: Request) -> Response:
        body = await request.body()
        try:
            update = Update.model_validate_json(body, context={"bot": runtime.bot})
        except ValidationError as exc:
            log.info("rejected webhook body", reason=_validation_reason(exc), size=len(body))
            return JSONResponse({"detail": "The body is not a Telegram Update."}, status_code=400)
        if not _known_type(update):
            # Newer than our aiogram: nothing can handle it, and a retry would not change that.
            log.info("update of an unknown type acknowledged", update_id=update.update_id)
            return _ok()
        if runtime.inbox is not None:
            return await _store(runtime.inbox, update, body)
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


# The update types this aiogram knows: the fields of Update but its id. Checked directly
# rather than through ``Update.event_type``, whose cache hashes the whole frozen update
# (~9 us of the inbox's acknowledgement).
_UPDATE_TYPES = tuple(name for name in Update.model_fields if name != "update_id")


def _known_type(update: Update) -> bool:
    return any(getattr(update, name) is not None for name in _UPDATE_TYPES)


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
    outcome = Outcome()
    try:
        result = await _within(
            runtime.processing_timeout,
            dispatcher.feed_update(bot, update, **{OUTCOME_KEY: outcome}),
        )
    except _ProcessingTimeout:
        log.warning(
            "update processing timed out; rolled back, Telegram will retry the update",
            update_id=update.update_id,
            processing_timeout=runtime.processing_timeout,
        )
        return _retry_later("The update could not be processed in time; retry later.", 1)
    except Exception as exc:
        failure = transient_failure(exc)
        if failure is not None:
            return _transient(update, failure, bot)
        if isinstance(exc, IntegrityError):
            log.error(
                "update rolled back: integrity error",
                update_id=update.update_id,
                error=summarize(exc),
            )
            return _ok()
        # A driver error's text may quote parameter values, an HTTP client's the bot token
        # (it is part of every Bot API URL).
        shown = loggable(exc, secrets=[bot.token])
        log.error(
            "update handler failed; rolled back and acknowledged",
            update_id=update.update_id,
            error_type=type(exc).__name__,
            error=redact(summarize(exc), [bot.token]),
            exc_info=True if shown is exc else shown,
        )
        return _ok()
    if outcome.transient is not None:
        # An error handler of the app swallowed the failure; the update was not applied.
        return _transient(update, outcome.transient, bot)
    if result is UNHANDLED or result is None or not isinstance(result, TelegramMethod):
        return _ok()
    return await _method_response(bot, result)


async def _store(inbox: Inbox, update: Update, body: bytes) -> Response:
    """Inbox mode: 200 only once the update is committed in the inbox (or already was)."""
    try:
        stored = await inbox.store(update, body)
    except Exception as exc:
        failure = transient_failure(exc)
        if isinstance(failure, DatabaseUnavailable):
            return _transient(update, failure, inbox.bot)
        # Not stored, so not acknowledged: Telegram keeps the update and retries it.
        log.error(
            "update could not be stored in the inbox; Telegram will retry it",
            update_id=update.update_id,
            error_type=type(exc).__name__,
            error=redact(summarize(exc), [inbox.bot.token]),
        )
        return _retry_later("The update could not be stored; retry later.", 1)
    if not stored:
        log.info("duplicate update acknowledged", update_id=update.update_id)
    return _ok()


# Seconds a draining process asks Telegram to wait: by then another process (or this one,
# restarted) takes the update.
_DRAIN_RETRY_AFTER = 5


class _ProcessingTimeout(Exception):
    """The update outlived ``processing_timeout``."""


# How long a timed-out update may take to roll back before it is answered anyway. Its
# cleanup is shielded from the cancellation and bounded by the driver (command_timeout); a
# frozen database would hold the answer for that long, past Telegram's wait.
_ROLLBACK_GRACE = 0.5
_orphans: set[asyncio.Task[Any]] = set()


async def _within(seconds: float | None, work: Coroutine[Any, Any, _T]) -> _T:
    """``await work``, cancelled after ``seconds`` (then :class:`_ProcessingTimeout`).

    A task of its own, so that the answer can leave while a cancelled update still waits
    for its (shielded) rollback on a database that does not answer: the task is kept
    until it ends and the driver's timeouts end it. A future and a timer, not
    ``asyncio.wait``: a third of the cost per update (~5 us instead of ~16 us).
    """
    if seconds is None:
        return await work
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    if await _first(loop, task, seconds):
        return task.result()
    task.cancel()
    if await _first(loop, task, _ROLLBACK_GRACE):
        if not task.cancelled() and task.exception() is None:
            return task.result()  # it finished (committed) just as it was cancelled
    else:
        _orphans.add(task)
        task.add_done_callback(_forget)
    raise _ProcessingTimeout


async def _first(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], seconds: float) -> bool:
    """Wait until ``task`` is done (True) or ``seconds`` have passed (False)."""
    if task.done():
        return True
    waiter: asyncio.Future[bool] = loop.create_future()

    def settle(_: object = None, *, done: bool = True) -> None:
        if not waiter.done():
            waiter.set_result(done)

    task.add_done_callback(settle)
    timer = loop.call_later(seconds, functools.partial(settle, done=False))
    try:
        return await waiter
    except asyncio.CancelledError:
        # The request itself is cancelled (the client left, the server stops): the update
        # is too, and its cleanup finishes before the cancellation goes on.
        task.cancel()
        await run_to_completion(asyncio.wait({task}))
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(settle)


def _forget(task: asyncio.Task[Any]) -> None:
    _orphans.discard(task)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.info("a timed-out update ended with an error", error=summarize(error))


def _transient(update: Update, failure: Exception, bot: Bot) -> Response:
    if isinstance(failure, DatabaseUnavailable):
        log.warning(
            "database unavailable; Telegram will retry the update",
            update_id=update.update_id,
            error=str(failure),
        )
        detail = "The database is unavailable; retry later."
    else:
        log.warning(
            "Bot API unavailable; rolled back, Telegram will retry the update",
            update_id=update.update_id,
            error_type=type(failure).__name__,
            error=redact(str(failure), [bot.token]),
        )
        detail = "The Bot API is unavailable; retry later."
    return _retry_later(detail, retry_after(failure))


def _retry_later(detail: str, seconds: int) -> Response:
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(seconds)})


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
        return _ok()
    return JSONResponse(payload)


async def inbox_readiness(request: Request) -> dict[str, Any] | None:
    """The inbox's status for :func:`db_manager.fastapi.health_router`'s ``details``.

    ``health_router(details={"inbox": inbox_readiness})``: pending, retrying and dead
    counts and the age of the oldest pending update; None (left out) outside inbox mode.
    """
    runtime: WebhookRuntime | None = getattr(request.app.state, "telegram", None)
    if runtime is None or runtime.inbox is None:
        return None
    inbox = runtime.inbox
    async with inbox.uow_factory() as uow:
        status = await inbox_status(uow.session, bot_id=inbox.bot_id)
    return {**status.as_dict(), "workers": inbox.running}
