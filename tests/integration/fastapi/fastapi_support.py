"""The FastAPI test app of tests/integration/fastapi and the tools its tests share.

Plain helpers, used as async context managers; what other suites need too (ports, the TCP
proxy, PostgreSQL views, waiting) is in ``tests/support``.

The app (:func:`build_app`) is a small, real FastAPI app on ``db_manager.fastapi``:

* ``POST /things`` (201), ``GET /things/{name}`` - the ordinary write and read;
* ``GET /no-db`` (no dependency) and ``GET /lazy`` (asks for the UnitOfWork, never uses it);
* ``POST /things/http-error``, ``/things/value-error``, ``/things/returned-4xx`` - write, then
  raise ``HTTPException(400)``, raise ``ValueError``, or *return* a 400 response;
* ``POST /things/with-background`` - a ``BackgroundTasks`` job with a UoW of its own;
* ``GET /things-stream`` - a ``StreamingResponse`` that touches the request's closed session;
* ``POST /things/slow`` - write, then a slow query (``pg_sleep``; a sleep on SQLite);
* ``POST /things/late`` - the *control*: the same write through FastAPI's default dependency
  scope, whose exit (the COMMIT) runs after the response was sent;
* ``GET /same-uow`` - two dependencies asking for the UnitOfWork.

Every app records what happened, in order, in ``app.state.events`` (a list of tuples).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import ForeignKey, MetaData, String, UniqueConstraint, event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.types import ASGIApp, Scope

from db_manager import NAMING_CONVENTION, Base, DatabaseSettings, UnitOfWork
from db_manager.fastapi import (
    OneLineStartupErrors,
    UowDep,
    UowFactoryDep,
    database_lifespan,
    get_uow,
    health_router,
    install_error_handlers,
)
from tests.support.asgi import ResponseStartProbe
from tests.support.pools import observer_engine

MAX_BODY_SIZE = 1024
# -- models ------------------------------------------------------------------------------------


class FastapiTestModel(Base):
    """The models of these tests, in a MetaData of their own (never ``Base.metadata``)."""

    __abstract__ = True
    __plugin__ = "fastapi_test"
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Owner(FastapiTestModel):
    __tablename__ = "owners"  # fastapi_test__owners

    id: Mapped[int] = mapped_column(primary_key=True)


class Thing(FastapiTestModel):
    """``name`` is unique; on PostgreSQL the check is deferred to COMMIT.

    ``owner_id`` is a foreign key checked at COMMIT on both backends (SQLite supports
    deferred foreign keys), so a commit-time failure can be provoked on each.
    """

    __tablename__ = "things"  # fastapi_test__things
    __table_args__ = (
        UniqueConstraint(
            "name", name="uq_fastapi_test__things_name", deferrable=True, initially="DEFERRED"
        ).ddl_if(dialect="postgresql"),
        UniqueConstraint("name", name="uq_fastapi_test__things_name_now").ddl_if(dialect="sqlite"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("fastapi_test__owners.id", deferrable=True, initially="DEFERRED"),
        default=None,
    )


assert Thing.__tablename__ == "fastapi_test__things"


class ThingIn(BaseModel):
    name: str
    owner_id: int | None = None


# The control: FastAPI's default scope, whose exit code runs after the response is sent.
LateUowDep = Annotated[UnitOfWork, Depends(get_uow)]


# -- the app -------------------------------------------------------------------------------------


Events = list[tuple[Any, ...]]
ResponseProbe = Callable[[Scope], Awaitable[None]]


async def insert_thing(uow: UnitOfWork, events: Events, name: str, owner_id: int | None) -> Thing:
    """Add a thing and flush it (so constraints checked immediately fail here, not at COMMIT);
    record the flush and, once it happens, the COMMIT of this request's session."""
    session = uow.session

    def after_commit(_session: Session) -> None:
        events.append(("after_commit", name, time.monotonic()))

    event.listen(session.sync_session, "after_commit", after_commit, once=True)
    thing = Thing(name=name, owner_id=owner_id)
    session.add(thing)
    await session.flush()
    events.append(("flushed", name))
    return thing


async def thing_names(settings: DatabaseSettings) -> set[str]:
    """The names of the committed things, read through a connection of its own."""
    engine = observer_engine(settings)
    try:
        async with engine.connect() as conn:
            return set((await conn.scalars(select(Thing.name))).all())
    finally:
        await engine.dispose()


def probe_response_start(settings: DatabaseSettings, events: Events) -> ResponseProbe:
    """For :class:`ResponseStartProbe`: when a response starts for a request carrying
    ``X-Probe-Name``, look for that thing from a separate connection and record
    ``("response_start", name, visible, time)``."""

    async def probe(scope: Scope) -> None:
        name = dict(scope["headers"]).get(b"x-probe-name")
        if name is not None:
            visible = name.decode() in await thing_names(settings)
            events.append(("response_start", name.decode(), visible, time.monotonic()))

    return probe


def build_app(settings: DatabaseSettings, *, max_body_size: int = MAX_BODY_SIZE) -> FastAPI:
    events: Events = []
    postgres = settings.dialect == "postgresql"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database_lifespan(settings, metadata=FastapiTestModel.metadata)(app):
            yield

    app = FastAPI(lifespan=lifespan, max_body_size=max_body_size)
    app.state.events = events
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    app.include_router(health_router())
    app.add_middleware(ResponseStartProbe, probe=probe_response_start(settings, events))

    @app.post("/things", status_code=201)
    async def create_thing(body: ThingIn, uow: UowDep) -> dict[str, Any]:
        thing = await insert_thing(uow, events, body.name, body.owner_id)
        return {"id": thing.id, "name": thing.name}

    @app.get("/things/{name}")
    async def read_thing(name: str, uow: UowDep) -> dict[str, Any]:
        thing = await uow.session.scalar(select(Thing).where(Thing.name == name))
        if thing is None:
            raise HTTPException(404, f"no thing {name!r}")
        return {"id": thing.id, "name": thing.name}

    @app.get("/no-db")
    async def no_db() -> dict[str, str]:
        return {"status": "no database here"}

    @app.get("/lazy")
    async def lazy(uow: UowDep) -> dict[str, str]:
        return {"uow": type(uow).__name__}

    @app.post("/things/http-error")
    async def http_error(body: ThingIn, uow: UowDep) -> None:
        await insert_thing(uow, events, body.name, body.owner_id)
        raise HTTPException(400, "refused after the write")

    @app.post("/things/value-error")
    async def value_error(body: ThingIn, uow: UowDep) -> None:
        await insert_thing(uow, events, body.name, body.owner_id)
        raise ValueError("a bug after the write")

    @app.post("/things/returned-4xx")
    async def returned_4xx(body: ThingIn, uow: UowDep) -> JSONResponse:
        # Returned, not raised: the handler finished normally, so the UnitOfWork commits.
        await insert_thing(uow, events, body.name, body.owner_id)
        return JSONResponse({"detail": "returned, not raised"}, status_code=400)

    @app.post("/things/late", status_code=201)
    async def create_thing_late(body: ThingIn, uow: LateUowDep) -> dict[str, Any]:
        thing = await insert_thing(uow, events, body.name, body.owner_id)
        return {"id": thing.id, "name": thing.name}

    @app.post("/things/with-background", status_code=201)
    async def with_background(
        body: ThingIn, uow: UowDep, uow_factory: UowFactoryDep, tasks: BackgroundTasks
    ) -> dict[str, Any]:
        thing = await insert_thing(uow, events, body.name, body.owner_id)

        async def follow_up() -> None:
            events.append(("background_start", body.name, uow.closed, time.monotonic()))
            async with uow_factory() as own:
                assert own is not uow
                seen = await own.session.scalar(select(Thing.id).where(Thing.name == body.name))
                own.session.add(Thing(name=f"{body.name}-bg"))
            events.append(("background_done", body.name, seen))

        tasks.add_task(follow_up)
        return {"id": thing.id, "name": thing.name}

    @app.get("/things-stream")
    async def stream(uow: UowDep) -> StreamingResponse:
        session = uow.session  # captured while the unit of work is active
        count = len((await session.scalars(select(Thing.id))).all())
        checkouts_before = checkouts(app)

        async def body() -> AsyncIterator[str]:
            yield f"count {count}\n"
            try:
                await uow.session.scalar(select(Thing.id))
                yield "uow.session: no error\n"
            except Exception as exc:
                events.append(("stream_error", "uow.session", exc))
                yield f"uow.session: {type(exc).__name__}\n"
            try:
                await session.scalar(select(Thing.id))
                yield "captured session: no error\n"
            except Exception as exc:
                events.append(("stream_error", "captured session", exc))
                yield f"captured session: {type(exc).__name__}\n"
            yield f"new checkouts {checkouts(app) - checkouts_before}\n"

        return StreamingResponse(body(), media_type="text/plain")

    @app.post("/things/slow", status_code=201)
    async def slow(
        body: ThingIn, uow: UowDep, request: Request, seconds: float = 1.0
    ) -> dict[str, Any]:
        thing = await insert_thing(uow, events, body.name, body.owner_id)
        events.append(("slow_start", body.name))
        if postgres:
            await uow.session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        else:
            await asyncio.sleep(seconds)
        events.append(("slow_done", body.name, await request.is_disconnected()))
        return {"id": thing.id, "name": thing.name}

    @app.get("/same-uow")
    async def same_uow(
        uow: UowDep, also: Annotated[UnitOfWork, Depends(_uow_again)]
    ) -> dict[str, bool]:
        return {"same": uow is also}

    return app


async def _uow_again(uow: UowDep) -> UnitOfWork:
    """A second dependency that asks for the request's UnitOfWork."""
    return uow


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory`` in a subprocess: the settings are read from the environment
    (``DATABASE__*``) when the app starts, not when it is built."""
    app = FastAPI(lifespan=database_lifespan(metadata=FastapiTestModel.metadata))
    install_error_handlers(app)
    app.add_middleware(OneLineStartupErrors)
    app.include_router(health_router())
    return app


# -- observing the app's engine -------------------------------------------------------------------


def engine_of(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.engine
    return engine


def count_checkouts(app: FastAPI) -> None:
    """From now on, ``checkouts(app)`` counts every connection the app's pool hands out."""
    counter = [0]

    def on_checkout(*_args: Any) -> None:
        counter[0] += 1

    event.listen(engine_of(app).sync_engine, "checkout", on_checkout)
    app.state.checkout_counter = counter


def checkouts(app: FastAPI) -> int:
    counter: list[int] | None = getattr(app.state, "checkout_counter", None)
    return counter[0] if counter is not None else -1


# -- running the app ------------------------------------------------------------------------------


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient
    settings: DatabaseSettings
    base_url: str
    events: Events = field(default_factory=list)

    @property
    def database(self) -> str:
        return str(self.settings.database)


@asynccontextmanager
async def in_process(
    settings: DatabaseSettings, app: FastAPI | None = None, asgi: ASGIApp | None = None
) -> AsyncIterator[Running]:
    """The app's lifespan plus an httpx client on ``ASGITransport`` (app errors become 500s,
    as a server would answer, instead of being raised into the test)."""
    app = app if app is not None else build_app(settings)
    transport = httpx.ASGITransport(app=asgi or app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app):
        count_checkouts(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Running(app, client, settings, "http://test", app.state.events)


@asynccontextmanager
async def on_uvicorn(
    settings: DatabaseSettings,
    app: FastAPI | None = None,
    asgi: ASGIApp | None = None,
    *,
    max_connections: int = 200,
    timeout: float = 30.0,
) -> AsyncIterator[Running]:
    """A real uvicorn server in a task of this event loop, on a free port, lifespan on."""
    app = app if app is not None else build_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without it each response waits ~40 ms on delayed ACKs
    # (asyncio only sets TCP_NODELAY itself on listeners it creates).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi or app,
        lifespan="on",
        log_config=None,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=10,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited during startup")
            await asyncio.sleep(0.01)
        count_checkouts(app)
        base_url = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
            yield Running(app, client, settings, base_url, app.state.events)
    finally:
        server.should_exit = True
        await task
        sock.close()


def events_of(events: Events, kind: str) -> list[tuple[Any, ...]]:
    return [e for e in events if e[0] == kind]


def names(events: Events, kind: str) -> list[str]:
    return [e[1] for e in events_of(events, kind)]
