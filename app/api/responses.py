"""The error answers of /api, declared in the OpenAPI document as they are sent.

Every status the API can answer is listed for each operation (``responses=``), so a
contract tester finds none undocumented: 401 (no or wrong token), 404 (no such user),
422 (an id that is no Telegram id; FastAPI's own body), 503 (the API is off, or the
database is unavailable, then with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["STATS_RESPONSES", "USER_RESPONSES", "ErrorOut"]


class ErrorOut(BaseModel):
    """An error answer: ``detail`` is a sentence; ``error`` a code, for database errors."""

    detail: str
    error: str | None = None


_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorOut,
        "description": "No `Authorization: Bearer` header, or not the API token.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
    },
    503: {
        "model": ErrorOut,
        "description": "The API is off (no `[app] api_token`), or the database is unavailable.",
    },
}

STATS_RESPONSES: dict[int | str, dict[str, Any]] = dict(_UNAUTHORIZED)
USER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    404: {"model": ErrorOut, "description": "No user with this Telegram id."},
    # 422 is FastAPI's own (HTTPValidationError), added for operations with parameters.
}
