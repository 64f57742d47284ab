"""FastAPI adapter for idempotency keys: a route class and a unit-of-work dependency.

::

    from fastapi import APIRouter
    from db_manager.fastapi_idempotency import IDEMPOTENCY_RESPONSES, IdempotentRoute, idempotent_uow

    router = APIRouter(route_class=IdempotentRoute)
    # scope="function": the COMMIT (key, writes and stored response together) runs before
    # the response is sent.
    IdemUowDep = Annotated[UnitOfWork, Depends(idempotent_uow(identity=client_id), scope="function")]

    @router.post("/payments", status_code=201, responses=IDEMPOTENCY_RESPONSES)
    async def pay(body: PaymentIn, uow: IdemUowDep) -> PaymentOut: ...

A request with ``Idempotency-Key: <1-255 printable ASCII>`` runs as described in
:mod:`db_manager.idempotency`; one without the header is an ordinary unit of work (as
``UowDep``). Answers: a repeat of a committed key gets the stored status, headers and body
with ``Idempotent-Replayed: true`` (the handler does not run); a malformed key 400; a key
reused for another method, path or body 422.

Why two pieces: a dependency's exit code never sees the response, and the route handler
alone runs before the dependencies (authentication included). So the dependency claims the
key (after the route's other dependencies) and yields the unit of work; the route class sees
the response the handler produced, stores it in that still-open transaction, and only then
does FastAPI close the function-scoped dependency, which commits. The stored body is the
bytes the client receives; a streaming response cannot be stored and is refused.
"""

from __future__ import annotations

# ruff: noqa: E402 - the extra is checked (db_manager/_extras.py) before FastAPI is imported.
from db_manager._extras import require

require("db_manager.fastapi_idempotency", "fastapi", "fastapi")

import datetime as dt
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import Depends, Header, HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel

from db_manager.errors import DatabaseManagerError
from db_manager.fastapi import get_uow_factory
from db_manager.idempotency import (
    DEFAULT_TTL,
    IdempotencyError,
    IdempotencyKeyInProgress,
    IdempotencyKeyMismatch,
    InvalidIdempotencyKey,
    StoredResponse,
    claim_key,
    parse_key,
    record_response,
    request_fingerprint,
)
from db_manager.uow import UnitOfWork

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_RESPONSES",
    "REPLAYED_HEADER",
    "STORED_HEADERS",
    "IdempotencyErrorOut",
    "IdempotentRoute",
    "IdempotentUowDep",
    "Identity",
    "ValidationErrorOut",
    "idempotent_uow",
]

IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
# The response headers a replay repeats; the rest (content-length, date, set-cookie, ...)
# belong to one transmission or must not be handed out again.
STORED_HEADERS: Final = frozenset(
    {"content-type", "location", "etag", "last-modified", "content-language", "content-location"}
)


class IdempotencyErrorOut(BaseModel):
    """The body of the 400, 409 and 422 answers this module sends."""

    detail: str


class ValidationErrorOut(BaseModel):
    """FastAPI's own 422 body (a list of validation errors), which shares the status."""

    detail: list[dict[str, Any]]


# For ``responses=`` of an idempotent route, so OpenAPI lists the statuses it adds. The 422
# is either FastAPI's validation answer or a reused key, so both bodies are declared.
IDEMPOTENCY_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": IdempotencyErrorOut, "description": "The Idempotency-Key header is malformed."},
    409: {
        "model": IdempotencyErrorOut,
        "description": "The first request with this Idempotency-Key has not finished; retry.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    422: {
        "model": IdempotencyErrorOut | ValidationErrorOut,
        "description": "The request is not valid, or its Idempotency-Key was already used "
        "with another method, path or body.",
    },
}
DEFAULT_SCOPE: Final = "anonymous"

Identity = Callable[[Request], str | Awaitable[str]]
_STATE_KEY = "db_manager.idempotency"


class _Claim:
    __slots__ = ("key", "scope", "uow")

    def __init__(self, uow: UnitOfWork, scope: str, key: str) -> None:
        self.uow = uow
        self.scope = scope
        self.key = key


class _Pending:
    """Set on the request by :class:`IdempotentRoute`; the dependency fills in the claim."""

    __slots__ = ("claim",)

    def __init__(self) -> None:
        self.claim: _Claim | None = None


class _Replay(Exception):
    """Raised by the dependency for a committed key; :class:`IdempotentRoute` answers it."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("replay")
        self.stored = stored


class IdempotentRoute(APIRoute):
    """The route class of routers whose handlers use :func:`idempotent_uow`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def idempotent_handler(request: Request) -> Response:
            pending = _Pending()
            request.scope[_STATE_KEY] = pending
            try:
                response = await handler(request)
            except _Replay as replay:
                return _replayed(replay.stored)
            claim = pending.claim
            if claim is not None:
                # The dependency's unit of work is still open: FastAPI closes function-scoped
                # dependencies after this handler returns, so this write commits with the rest.
                await record_response(claim.uow.session, claim.scope, claim.key, _stored(response))
            return response

        return idempotent_handler


def _stored(response: Response) -> StoredResponse:
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        raise IdempotencyError(
            f"{type(response).__name__} has no body to store for replay; an idempotent route "
            "must return a response with a body (not a StreamingResponse or FileResponse)"
        )
    headers = tuple(
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in response.raw_headers
        if name.decode("latin-1").lower() in STORED_HEADERS
    )
    return StoredResponse(response.status_code, headers, body)


def _replayed(stored: StoredResponse) -> Response:
    response = Response(content=stored.body, status_code=stored.status_code)
    for name, value in stored.headers:
        response.headers.append(name, value)
    response.headers[REPLAYED_HEADER] = "true"
    return response


def idempotent_uow(
    *, identity: Identity | None = None, ttl: dt.timedelta = DEFAULT_TTL
) -> Callable[..., AsyncIterator[UnitOfWork]]:
    """A dependency: the request's unit of work, with the request's ``Idempotency-Key``
    claimed in it first. Use it with ``Depends(..., scope="function")`` on a router whose
    ``route_class`` is :class:`IdempotentRoute`.

    ``identity(request)`` (sync or async) names the client the keys belong to, for example a
    token's subject; it runs after the route's other dependencies, so after authentication.
    Without it every client shares one scope. Keys expire after ``ttl`` (24 h by default).
    """
    if ttl <= dt.timedelta(0):
        raise DatabaseManagerError(f"the idempotency ttl must be positive, not {ttl}")

    async def idempotent_unit_of_work(
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=IDEMPOTENCY_KEY_HEADER,
                description="1-255 printable ASCII characters; a retry with the same key "
                "gets the first answer again instead of repeating the write.",
                # Documented, not enforced here (a bad key is our 400, not FastAPI's 422).
                # No space at either end: HTTP strips it, so such a key never arrives whole.
                json_schema_extra={"pattern": r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"},
            ),
        ] = None,
    ) -> AsyncIterator[UnitOfWork]:
        pending = request.scope.get(_STATE_KEY)
        if not isinstance(pending, _Pending):
            raise DatabaseManagerError(
                "idempotent_uow needs its route to be an IdempotentRoute: "
                "APIRouter(route_class=IdempotentRoute)"
            )
        key = None
        if idempotency_key is not None:
            try:
                key = parse_key(idempotency_key)
            except InvalidIdempotencyKey as exc:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        scope = DEFAULT_SCOPE
        if key is not None and identity is not None:
            named = identity(request)
            scope = await named if inspect.isawaitable(named) else named
        factory = await get_uow_factory(request)
        async with factory() as uow:
            if key is not None:
                await _claim(request, uow, scope, key, ttl)
                pending.claim = _Claim(uow, scope, key)
            yield uow

    return idempotent_unit_of_work


async def _claim(
    request: Request, uow: UnitOfWork, scope: str, key: str, ttl: dt.timedelta
) -> None:
    target = request.url.path
    if request.url.query:
        target = f"{target}?{request.url.query}"
    fingerprint = request_fingerprint(request.method, target, await request.body())
    try:
        stored = await claim_key(uow.session, scope, key, fingerprint, ttl=ttl)
    except IdempotencyKeyMismatch as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except IdempotencyKeyInProgress as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc), {"Retry-After": "1"}) from None
    if stored is not None:
        raise _Replay(stored)


# scope="function": the COMMIT of the key, the handler's writes and the stored response runs
# before the response is sent. No identity: every client shares one scope of keys.
IdempotentUowDep = Annotated[UnitOfWork, Depends(idempotent_uow(), scope="function")]
