"""The HTTP API (``/api``): read-only views of users, payments and totals."""

from __future__ import annotations

from fastapi import APIRouter

from app.config import AppSection

__all__ = ["build_api_router"]


def build_api_router(settings: AppSection) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"])
    return router
