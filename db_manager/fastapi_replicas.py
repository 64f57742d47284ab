"""FastAPI adapter for read replicas: read-your-writes across requests, and replica status.

::

    from db_manager.fastapi_replicas import (
        CommitPositionHeader, PositionReaderDep, TrackedUowDep, replica_status_router,
    )

    app.add_middleware(CommitPositionHeader)
    app.include_router(replica_status_router())          # GET /health/replicas

    @app.post("/items")
    async def create(uow: TrackedUowDep) -> ...:          # answer carries X-DB-Position
        ...

    @app.get("/items/{id}")
    async def read(id: int, reader: PositionReaderDep) -> ...:   # honours X-DB-Position
        ...

The client sends back the ``X-DB-Position`` header of its last write on its next reads; it
is opaque to the client (a WAL position in PostgreSQL's text form; nothing secret). Those
reads are served by a replica that has replayed the write, else by the primary. Without
replicas configured the dependencies are the plain ones: no header, no extra round trip.
A malformed header is answered 400 with one line.
"""

# ruff: noqa: E402 - the extra is checked before FastAPI is imported (db_manager/_extras.py)
from __future__ import annotations

from db_manager._extras import require

require("db_manager.fastapi_replicas", "fastapi", "fastapi")

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db_manager.database import Database
from db_manager.fastapi import get_database, get_uow_factory
from db_manager.positions import CommitTicket, format_position, parse_position
from db_manager.reader import Reader
from db_manager.uow import UnitOfWork

__all__ = [
    "POSITION_HEADER",
    "CommitPositionHeader",
    "PositionReaderDep",
    "TrackedUowDep",
    "get_position_reader",
    "get_tracked_uow",
    "replica_status_router",
]

POSITION_HEADER: Final = "X-DB-Position"
_TICKET_KEY: Final = "db_manager.commit_ticket"
_HEADER_BYTES: Final = POSITION_HEADER.lower().encode()


async def get_tracked_uow(request: Request) -> AsyncIterator[Any]:
    """:func:`db_manager.fastapi.get_uow` whose commit position (with replicas configured)
    goes back to the client in ``X-DB-Position`` (added by :class:`CommitPositionHeader`)."""
    factory = await get_uow_factory(request)
    database: Database[Any] = await get_database(request)
    async with factory() as uow:
        if database.replicas is not None:
            request.scope[_TICKET_KEY] = database.replicas.track(uow)
        yield uow


async def get_position_reader(request: Request) -> Reader:
    """The Reader, at the position the client sent in ``X-DB-Position`` (if any)."""
    database: Database[Any] = await get_database(request)
    reader = database.reader
    text = request.headers.get(POSITION_HEADER)
    if text is None or reader.replicas is None:
        return reader
    try:
        position = parse_position(text.strip())
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"{POSITION_HEADER}: {exc}") from None
    return reader.at(position)


# scope="function": the COMMIT (and the position taken after it) happens before the response.
TrackedUowDep = Annotated[UnitOfWork, Depends(get_tracked_uow, scope="function")]
PositionReaderDep = Annotated[Reader, Depends(get_position_reader)]


class CommitPositionHeader:
    """Adds ``X-DB-Position`` to answers of requests whose tracked unit of work committed.

    A middleware because FastAPI merges a dependency's response headers before the code after
    its ``yield`` runs, and the position exists only after the COMMIT there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Message) -> None:
            if message["type"] == "http.response.start":
                ticket: CommitTicket | None = scope.get(_TICKET_KEY)
                text = None if ticket is None else ticket.text
                if text is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((_HEADER_BYTES, text.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_position)


def replica_status_router(*, prefix: str = "/health") -> APIRouter:
    """``GET /health/replicas``: each replica's state and lag as of the last refresh (no round
    trip). Always 200 while the database is started: replicas are optional for serving, so
    ``/health/ready`` stays the primary's check."""
    router = APIRouter()

    async def replicas(request: Request) -> JSONResponse:
        database: Database[Any] | None = getattr(request.app.state, "database", None)
        if database is None or not database.started:
            return JSONResponse({"status": "unavailable", "replicas": []}, status_code=503)
        replica_set = database.replicas
        if replica_set is None:
            return JSONResponse({"status": "ok", "replicas": []})
        return JSONResponse(
            {
                "status": "ok",
                "usable": len(replica_set.usable),
                "primary_position": format_position(replica_set.primary_position),
                "replicas": replica_set.status(),
            }
        )

    router.routes.append(
        Route(f"{prefix}/replicas", replicas, methods=["GET"], include_in_schema=False)
    )
    return router
