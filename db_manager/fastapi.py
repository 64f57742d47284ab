"""FastAPI adapter: lifespan, ``Depends(get_uow)``, health endpoints and error mapping.

::

    from fastapi import FastAPI
    from db_manager.fastapi import UowDep, database_lifespan, health_router, install_error_handlers

    app = FastAPI(lifespan=database_lifespan(settings), max_body_size=1 << 20)
    install_error_handlers(app)
    app.include_router(health_router())

    @app.post("/things", status_code=201)
    async def create_thing(uow: UowDep) -> dict[str, str]:
        uow.session.add(Thing(name="x"))
        return {"status": "created"}    # committed before the 201 leaves

The lifespan keeps on ``app.state``: ``database`` (the started :class:`Database`),
``engine``, ``uow_factory`` and ``services`` (a :class:`ServiceRegistry` where the engine is
``"db_manager:engine"``). Nothing is built at import time.
"""

from __future__ import annotations

from db_manager._extras import require

require("db_manager.fastapi", "fastapi", "fastapi")

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import MetaData
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db_manager.config import DatabaseSettings, load_settings
from db_manager.database import Database
from db_manager.drain import Drain
from db_manager.errors import (
    DatabaseManagerError,
    DatabaseUnavailable,
    as_unavailable,
    is_connection_error,
    summarize,
)
from db_manager.heap import freeze_startup_heap
from db_manager.reader import Reader
from db_manager.services import (
    DATABASE_SERVICE,
    ENGINE_SERVICE,
    UOW_FACTORY_SERVICE,
    ServiceRegistry,
)
from db_manager.uow import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "DATABASE_SERVICE",
    "ENGINE_SERVICE",
    "UOW_FACTORY_SERVICE",
    "EngineDep",
    "OneLineStartupErrors",
    "ReaderDep",
    "ServiceRegistry",
    "UowDep",
    "UowFactoryDep",
    "database_lifespan",
    "get_database",
    "get_engine",
    "get_reader",
    "get_services",
    "get_uow",
    "get_uow_factory",
    "health_router",
    "install_error_handlers",
]

log = structlog.get_logger("db_manager.fastapi")


def get_services(app: FastAPI) -> ServiceRegistry:
    """The app's service registry, created on first use."""
    registry = getattr(app.state, "services", None)
    if registry is None:
        registry = ServiceRegistry()
        app.state.services = registry
    return registry


def database_lifespan(
    settings: DatabaseSettings | None = None,
    *,
    uow_class: type[UnitOfWork] = UnitOfWork,
    metadata: MetaData | None = None,
    config_file: str | None = None,
    freeze_gc: bool = True,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that starts the database and stores it on ``app.state``.

    With no ``settings`` they are loaded (config file, env) when the app starts, not before.
    Compose it with your own lifespan by nesting: ``async with database_lifespan(s)(app): ...``.
    Once started it freezes the start-up heap for the garbage collector, once per process
    (:func:`db_manager.heap.freeze_startup_heap`: about a quarter less CPU per request
    under load); ``freeze_gc=False`` leaves the collector alone.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings if settings is not None else load_settings(config_file=config_file)
        database = Database(resolved, uow_class=uow_class, metadata=metadata)
        await database.start()
        try:
            if resolved.create_tables:
                await database.create_all()
            services = get_services(app)
            app.state.database = database
            app.state.engine = database.engine
            app.state.uow_factory = database.uow_factory
            services.register(DATABASE_SERVICE, database)
            services.register(ENGINE_SERVICE, database.engine)
            services.register(UOW_FACTORY_SERVICE, database.uow_factory)
            if freeze_gc:
                freeze_startup_heap()
            yield
        finally:
            services = get_services(app)
            for name in (ENGINE_SERVICE, DATABASE_SERVICE, UOW_FACTORY_SERVICE):
                services.unregister(name)
            await database.dispose()

    return lifespan


# -- dependencies ------------------------------------------------------------------------


def _from_state(request: Request, name: str) -> Any:
    """``request.app.state.<name>`` as put there by :func:`database_lifespan`, or a clear error."""
    value = getattr(request.app.state, name, None)
    if value is None:
        raise DatabaseManagerError(
            f"no {name} on app.state; add `lifespan=database_lifespan(...)` to the app"
        )
    return value


async def get_database(request: Request) -> Database[Any]:
    database: Database[Any] = _from_state(request, "database")
    return database


async def get_engine(request: Request) -> AsyncEngine:
    return (await get_database(request)).engine


async def get_uow_factory(request: Request) -> UnitOfWorkFactory[Any]:
    """The process's uow_factory, for work that outlives the request (background tasks)."""
    factory: UnitOfWorkFactory[Any] = _from_state(request, "uow_factory")
    return factory


async def get_uow(request: Request) -> AsyncIterator[Any]:
    """One UnitOfWork per request: committed when the handler returns, rolled back if it raises.

    Use it through :data:`UowDep` (or your own alias with ``scope="function"``), so the
    commit happens before the response is sent: a failed COMMIT becomes the response (409 for
    an integrity conflict, 503 for a lost connection, 500 otherwise) and the client never
    hears 2xx for work that was not saved.

    * Raising (``HTTPException`` included) rolls back.
    * **Returning** is success for the unit of work, whatever the status code: a handler that
      *returns* ``JSONResponse(..., status_code=400)`` has its writes committed. To answer
      4xx without keeping the writes, raise ``HTTPException`` (or ``await uow.rollback()``
      before returning).
    * Every dependency of the request that asks for it gets the same UnitOfWork.
    * It is closed once the handler returns: background tasks and streaming bodies must open
      their own from the ``uow_factory`` (:data:`UowFactoryDep`); touching the request's
      raises ``UnitOfWorkStateError`` (or SQLAlchemy's closed-session error for a session
      captured earlier), never a silently reopened connection.
    """
    factory: UnitOfWorkFactory[Any] = _from_state(request, "uow_factory")
    async with factory() as uow:
        yield uow


# scope="function": the exit code (the COMMIT) runs when the handler returns, before the
# response is sent; FastAPI's default scope would commit after the client already has its 2xx.
UowDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
UowFactoryDep = Annotated[UnitOfWorkFactory[Any], Depends(get_uow_factory)]


# -- health ------------------------------------------------------------------------------


ReadinessDetail = Callable[[Request], Awaitable[dict[str, Any] | None]]


def health_router(
    *,
    prefix: str = "/health",
    ready_timeout: float = 1.0,
    details: Mapping[str, ReadinessDetail] | None = None,
) -> APIRouter:
    """``GET /health/live`` (no database) and ``GET /health/ready`` (``SELECT 1``, bounded).

    While the process drains (``app.state.drain``, a :class:`~db_manager.drain.Drain`,
    started) readiness answers 503 ``"draining"`` at once, so a load balancer stops sending
    before the server stops. ``details`` adds named sections to a ready answer (for example
    ``{"inbox": inbox_readiness}`` from :mod:`db_manager.telegram.webhook`), each bounded by
    ``ready_timeout``; one that fails or returns None is left out and never fails readiness.

    ``ready_timeout`` bounds the whole check, connecting included: a server that accepts
    connections and never answers still gets a 503 after that long (1 s by default, well
    inside the 2 s that probes and load balancers usually allow).

    The probe is unauthenticated, so a 503 names no cause (``"reason": "database
    unavailable"``); the driver's message (role, host, why) goes to the log as a warning.
    """
    router = APIRouter()

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        drain: Drain | None = getattr(request.app.state, "drain", None)
        if drain is not None and drain.started:
            return _not_ready("draining", status="draining")
        database: Database[Any] | None = getattr(request.app.state, "database", None)
        if database is None or not database.started:
            return _not_ready("database not started")
        try:
            # The read pool: one autocommit round trip, and it still answers when the
            # main pool is exhausted by slow requests.
            latency = await database.reader.ping(within=ready_timeout)
        except DatabaseUnavailable as exc:
            log.warning("readiness check failed", path=request.url.path, error=str(exc))
            return _not_ready("database unavailable")
        body: dict[str, Any] = {
            "status": "ok",
            "database": {"status": "ok", "latency_ms": round(latency, 3)},
        }
        for name, detail in (details or {}).items():
            try:
                async with asyncio.timeout(ready_timeout):
                    section = await detail(request)
            except Exception as exc:
                log.warning("readiness detail failed", detail=name, error=summarize(exc))
                continue
            if section is not None:
                body[name] = section
        return JSONResponse(body)

    # Plain Starlette routes: probes hit them often, and they need none of FastAPI's
    # per-request dependency machinery (a tenth of /health/ready's CPU; see bench/).
    router.routes.append(Route(f"{prefix}/live", live, methods=["GET"], include_in_schema=False))
    router.routes.append(Route(f"{prefix}/ready", ready, methods=["GET"], include_in_schema=False))
    return router


def _not_ready(reason: str, *, status: str = "unavailable") -> JSONResponse:
    return JSONResponse(
        {"status": status, "database": {"status": "unavailable", "reason": reason}}
        if status == "unavailable"
        else {"status": status, "reason": reason},
        status_code=503,
        headers={"Retry-After": "1"},
    )


# -- errors ------------------------------------------------------------------------------


def install_error_handlers(app: FastAPI, *, json_500: bool = True) -> None:
    """Map database errors a handler did not handle to JSON: 503, 409 or 500; log each once.

    With ``json_500`` (the default) any other unhandled exception is answered with a JSON 500
    too (``{"detail": "Internal server error.", "error": "internal_error"}``) instead of
    Starlette's plain-text page; the exception still propagates to the server, which logs
    its traceback as usual. The request's UnitOfWork has rolled back by then.
    """
    app.add_exception_handler(DatabaseUnavailable, _unavailable_handler)
    app.add_exception_handler(IntegrityError, _integrity_handler)
    app.add_exception_handler(SQLAlchemyError, _sqlalchemy_handler)
    if json_500:
        app.add_exception_handler(Exception, _internal_error_handler)


async def _unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "database unavailable",
        path=request.url.path,
        method=request.method,
        error_type=type(exc).__name__,
        error=str(exc),
    )
    retry_after = getattr(exc, "retry_after", 1)
    return JSONResponse(
        {"detail": "The database is unavailable; retry shortly.", "error": "database_unavailable"},
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


async def _integrity_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "integrity error",
        path=request.url.path,
        method=request.method,
        error=summarize(exc),
    )
    return JSONResponse(
        {"detail": "The request conflicts with existing data.", "error": "conflict"},
        status_code=409,
    )


async def _sqlalchemy_handler(request: Request, exc: Exception) -> JSONResponse:
    if is_connection_error(exc):
        return await _unavailable_handler(request, as_unavailable(exc))
    log.error(
        "database error",
        path=request.url.path,
        method=request.method,
        error_type=type(exc).__name__,
        error=summarize(exc),
    )
    return JSONResponse(
        {"detail": "Internal server error.", "error": "database_error"}, status_code=500
    )


async def _internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's ServerErrorMiddleware calls this, then re-raises ``exc`` for the server to
    # log with its traceback; so only the request path is added here, at ERROR, once.
    log.error(
        "unhandled error",
        path=request.url.path,
        method=request.method,
        error_type=type(exc).__name__,
    )
    return JSONResponse(
        {"detail": "Internal server error.", "error": "internal_error"}, status_code=500
    )


class OneLineStartupErrors:
    """Report a db_manager error during startup as one line instead of a traceback.

    Its own step, added by the app: ``app.add_middleware(OneLineStartupErrors)``.

    Starlette sends ``lifespan.startup.failed`` with the formatted traceback; for our own
    errors (bad config, unreachable database) the message already says everything.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        reported = False

        async def send_one_line(message: Message) -> None:
            nonlocal reported
            if message["type"] == "lifespan.startup.failed":
                exc = sys.exc_info()[1]
                if isinstance(exc, DatabaseManagerError):
                    message = {**message, "message": f"{type(exc).__name__}: {exc}"}
                    reported = True
            await send(message)

        try:
            await self.app(scope, receive, send_one_line)
        except DatabaseManagerError:
            if not reported:
                raise


# -- the read path -----------------------------------------------------------------------


async def get_reader(request: Request) -> Reader:
    """The process's :class:`~db_manager.reader.Reader` (shared, stateless; no cleanup).

    ``async def`` on purpose: a sync dependency would run in a worker thread (~100 µs).
    """
    database: Database[Any] = _from_state(request, "database")
    return database.reader


# Default scope is right here: the reader has nothing to commit or clean up after the handler.
ReaderDep = Annotated[Reader, Depends(get_reader)]
