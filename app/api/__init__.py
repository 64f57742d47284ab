"""The HTTP API (``/api``): read-only views of users, payments and totals, and the writes
(safe to retry with an ``Idempotency-Key``, see :mod:`app.api.writes`)."""

from fastapi import APIRouter

from app.api.routes import build_router as _build_read_router
from app.api.writes import build_router as _build_write_router

__all__ = ["build_api_router"]


def build_api_router() -> APIRouter:
    router = APIRouter()
    router.include_router(_build_read_router())
    router.include_router(_build_write_router())
    return router
