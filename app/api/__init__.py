"""The HTTP API (``/api``): read-only views of users, payments and totals."""

from app.api.routes import build_router as build_api_router

__all__ = ["build_api_router"]
