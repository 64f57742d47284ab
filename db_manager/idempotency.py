"""Idempotency keys bound to the transaction of the write they protect.

A client that did not hear the answer to a write (a cut connection, a 503, a COMMIT whose
outcome is unknown) retries it with the same ``Idempotency-Key``. The key, the handler's
writes and the response are committed together, in the request's own transaction, so after
any crash a key is bound either to a committed effect and its response, or to nothing:

1. :func:`claim_key` inserts ``(scope, key)`` with a hash of the request before the handler
   runs: the first statement of the transaction.
2. The handler runs in the same transaction.
3. :func:`record_response` stores the status, the headers that matter and the body.
4. The COMMIT makes all of it durable at once; a rollback leaves no trace of the key.

A repeat of a committed key gets :class:`StoredResponse` back from :func:`claim_key` (the
handler must not run); a repeat with another method, path or body raises
:class:`IdempotencyKeyMismatch`. A repeat *while the first is still running* waits on the
first one's uncommitted row (PostgreSQL's unique index; SQLite serializes writers), then sees
its outcome: committed means replay, rolled back means the repeat runs. An expired key is
taken over as new by the same statement. :func:`prune_idempotency_keys` deletes expired rows.

Framework-free (SQLAlchemy only); :mod:`db_manager.fastapi_idempotency` wires it into
FastAPI. Importing this module adds ``db_manager__idempotency_keys`` to
``db_manager.Base.metadata``; apps that never import it never see the table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from db_manager._sql import utcnow
from db_manager.base import Base
from db_manager.errors import DatabaseManagerError

__all__ = [
    "DEFAULT_TTL",
    "IdempotencyError",
    "IdempotencyKey",
    "IdempotencyKeyInProgress",
    "IdempotencyKeyMismatch",
    "InvalidIdempotencyKey",
    "StoredResponse",
    "claim_key",
    "parse_key",
    "prune_idempotency_keys",
    "record_response",
    "request_fingerprint",
]

DEFAULT_TTL: Final = dt.timedelta(hours=24)
MAX_SCOPE_LENGTH: Final = 255
# The IETF draft's key is a string; we accept 1-255 printable ASCII characters, so a key fits
# the column and can be logged or shown in an error without escaping.
_KEY = re.compile(r"[\x20-\x7e]{1,255}")


class IdempotencyError(DatabaseManagerError):
    """Root of the idempotency errors."""


class InvalidIdempotencyKey(IdempotencyError):
    """The key is empty, longer than 255 characters, or not printable ASCII (answer 400)."""


class IdempotencyKeyMismatch(IdempotencyError):
    """The key was already used for another method, path or body (answer 422)."""


class IdempotencyKeyInProgress(IdempotencyError):
    """The key's row committed without a response: its handler committed part of its work
    early (``uow.commit()``) and has not finished (answer 409 with ``Retry-After``)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What the first request with a key answered; a repeat answers it again."""

    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class IdempotencyKey(Base):
    """One row per key and client; the response columns are set before the commit."""

    __tablename__ = "db_manager__idempotency_keys"

    # The client identity the app supplies (e.g. a token's subject): keys of two clients
    # never collide, and one client cannot replay another's responses.
    scope: Mapped[str] = mapped_column(String(MAX_SCOPE_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[list[list[str]] | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


def parse_key(raw: str) -> str:
    """``raw`` if it is a valid key, else :class:`InvalidIdempotencyKey` with the rule."""
    if _KEY.fullmatch(raw) is None:
        raise InvalidIdempotencyKey(
            "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
        )
    return raw


def request_fingerprint(method: str, target: str, body: bytes) -> str:
    """SHA-256 (hex) of the method, the target (path and query) and the body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), target.encode("utf-8", "surrogateescape")):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(body)
    return digest.hexdigest()


# Core statements on the table (no ORM bookkeeping), built once, with bound parameters (SQLAlchemy's compiled cache does the rest). An existing
# row is taken over only if it expired; otherwise the statement changes nothing (rowcount 0).
# On PostgreSQL a concurrent, uncommitted row with the same key makes it wait for that
# transaction's outcome: that wait is how a repeat "waits for the first".
_T = cast(Table, IdempotencyKey.__table__)
_VALUES = {
    name: bindparam(name, type_=_T.c[name].type)
    for name in ("scope", "key", "request_hash", "created_at", "expires_at")
}


def _upsert(dialect: Any) -> Any:
    stmt = dialect.insert(_T).values(_VALUES)
    return stmt.on_conflict_do_update(
        index_elements=[_T.c.scope, _T.c.key],
        set_={
            "request_hash": stmt.excluded.request_hash,
            "status_code": None,
            "headers": None,
            "body": None,
            "created_at": stmt.excluded.created_at,
            "expires_at": stmt.excluded.expires_at,
        },
        where=_T.c.expires_at <= stmt.excluded.created_at,
    )


_CLAIM = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}
_LOOKUP = select(_T.c.request_hash, _T.c.status_code, _T.c.headers, _T.c.body).where(
    _T.c.scope == bindparam("scope"), _T.c.key == bindparam("key")
)
_RECORD = (
    update(_T)
    .where(_T.c.scope == bindparam("w_scope"), _T.c.key == bindparam("w_key"))
    .values(
        status_code=bindparam("status_code"),
        headers=bindparam("headers", type_=JSON()),
        body=bindparam("body", type_=LargeBinary()),
    )
)


async def claim_key(
    session: AsyncSession,
    scope: str,
    key: str,
    fingerprint: str,
    *,
    ttl: dt.timedelta = DEFAULT_TTL,
) -> StoredResponse | None:
    """Claim ``key`` for ``scope`` in ``session``'s transaction.

    Returns None when the key is new (or expired): the caller runs the handler, then
    :func:`record_response`, then commits. Returns the :class:`StoredResponse` of a committed
    earlier request with the same fingerprint: the caller answers it and runs nothing.
    Raises :class:`IdempotencyKeyMismatch` for another fingerprint and
    :class:`IdempotencyKeyInProgress` for a row without a response. One statement for a new
    key, two for a repeat.
    """
    if not 0 < len(scope) <= MAX_SCOPE_LENGTH:
        raise IdempotencyError(
            f"the idempotency scope (client identity) must be 1 to {MAX_SCOPE_LENGTH} "
            f"characters, not {len(scope)}; hash a longer identity"
        )
    dialect = session.get_bind().dialect.name
    claim = _CLAIM.get(dialect)
    if claim is None:  # pragma: no cover - only the two supported dialects are configured
        raise IdempotencyError(f"idempotency keys are not supported on {dialect}")
    now = utcnow()
    values = {
        "scope": scope,
        "key": key,
        "request_hash": fingerprint,
        "created_at": now,
        "expires_at": now + ttl,
    }
    result = cast(CursorResult[Any], await session.execute(claim, values))
    if result.rowcount == 1:
        return None
    row = (await session.execute(_LOOKUP, {"scope": scope, "key": key})).one()
    if row.request_hash != fingerprint:
        raise IdempotencyKeyMismatch(
            "This Idempotency-Key was already used with another method, path or body; "
            "send a new key for a new request."
        )
    if row.status_code is None:
        raise IdempotencyKeyInProgress(
            "The first request with this Idempotency-Key has not finished; retry shortly."
        )
    headers = tuple((str(name), str(value)) for name, value in row.headers or ())
    return StoredResponse(int(row.status_code), headers, bytes(row.body or b""))


async def record_response(
    session: AsyncSession, scope: str, key: str, response: StoredResponse
) -> None:
    """Store ``response`` on the claimed key, in the same transaction (one statement)."""
    await session.execute(
        _RECORD,
        {
            "w_scope": scope,
            "w_key": key,
            "status_code": response.status_code,
            "headers": [list(pair) for pair in response.headers],
            "body": response.body,
        },
    )


async def prune_idempotency_keys(session: AsyncSession, *, now: dt.datetime | None = None) -> int:
    """Delete the keys that expired by ``now`` (default: the current time); return how many."""
    cutoff = now if now is not None else utcnow()
    stmt = delete(_T).where(_T.c.expires_at <= cutoff)
    result = cast(CursorResult[Any], await session.execute(stmt))
    return int(result.rowcount or 0)
