"""Bearer-token check for /api: constant-time, and the API is off without a token.

The scheme is FastAPI's :class:`~fastapi.security.HTTPBearer`, so the OpenAPI document
declares it (``components.securitySchemes``) and every /api operation requires it; its
automatic error is off, because the answers are ours: 503 while the API is off, else 401
with ``WWW-Authenticate: Bearer`` for a missing or wrong token.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["require_api_token"]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="api_token",
    description="The `[app] api_token` (env `APP__API_TOKEN`); without it the API is off (503).",
)


async def require_api_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected: bytes | None = request.app.state.api_token
    if expected is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The API is off: set [app] api_token (APP__API_TOKEN) to turn it on.",
        )
    # Both sides as ASCII bytes: the configured token is visible ASCII (AppSection refuses
    # anything else), the header arrives stripped (HTTPBearer); a non-ASCII header cannot match.
    token = "" if credentials is None else credentials.credentials
    presented = token.encode("ascii") if token.isascii() else b""
    if not hmac.compare_digest(presented, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "A valid `Authorization: Bearer <token>` header is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
