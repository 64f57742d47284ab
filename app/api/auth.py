"""Bearer-token check for /api: constant-time, and the API is off without a token."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

__all__ = ["require_api_token"]


async def require_api_token(request: Request) -> None:
    expected: bytes | None = request.app.state.api_token
    if expected is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The API is off: set [app] api_token (APP__API_TOKEN) to turn it on.",
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "A valid `Authorization: Bearer <token>` header is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
