"""``/api``: users, their payments, and totals, read through the read path (``ReaderDep``).

Each handler reads in one ``reader.snapshot()``: a read-only transaction on the read pool,
so the statements of one answer see one state of the database (the totals of /api/stats
agree with each other) and a slow API never takes connections from the bot's writes.
The answers are the read views' own dataclasses (``app.services``); FastAPI builds their
JSON schema and serializes them through pydantic's dataclass support.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from app.api.auth import require_api_token
from app.api.responses import STATS_RESPONSES, USER_RESPONSES
from app.services import PaymentInfo, Stats, UserProfile, stats, user_payments, user_profile
from db_manager.fastapi import ReaderDep

__all__ = ["build_router"]

# Telegram user ids are positive and fit the BIGINT column; anything else is a 422, not a
# database error (an id beyond 64 bits cannot even be bound as a query parameter).
TelegramId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The user's Telegram id.")]


def _no_user(telegram_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"No user with Telegram id {telegram_id}.")


async def get_user(telegram_id: TelegramId, reader: ReaderDep) -> UserProfile:
    async with reader.snapshot() as session:
        profile = await user_profile(session, telegram_id)
    if profile is None:
        raise _no_user(telegram_id)
    return profile


async def get_user_payments(telegram_id: TelegramId, reader: ReaderDep) -> list[PaymentInfo]:
    async with reader.snapshot() as session:
        payments = await user_payments(session, telegram_id)
    if payments is None:
        raise _no_user(telegram_id)
    return payments


async def get_stats(reader: ReaderDep) -> Stats:
    async with reader.snapshot() as session:
        return await stats(session)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_api_token)])
    router.add_api_route(
        "/users/{telegram_id}", get_user, methods=["GET"], responses=USER_RESPONSES
    )
    router.add_api_route(
        "/users/{telegram_id}/payments",
        get_user_payments,
        methods=["GET"],
        responses=USER_RESPONSES,
    )
    router.add_api_route("/stats", get_stats, methods=["GET"], responses=STATS_RESPONSES)
    return router
