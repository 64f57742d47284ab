"""``/api``: users, their payments, and totals. Every handler reads through ``get_uow``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from app.api.auth import require_api_token
from app.api.schemas import PaymentOut, StatsOut, UserOut
from app.services import stats, user_payments, user_profile
from app.unit_of_work import AppUnitOfWork
from db_manager.fastapi import get_uow

__all__ = ["build_router"]

# scope="function": the unit of work ends (and commits) before the response is sent.
AppUowDep = Annotated[AppUnitOfWork, Depends(get_uow, scope="function")]
# Telegram user ids are positive and fit the BIGINT column; anything else is a 422, not a
# database error (an id beyond 64 bits cannot even be bound as a query parameter).
TelegramId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The user's Telegram id.")]


async def get_user(telegram_id: TelegramId, uow: AppUowDep) -> UserOut:
    profile = await user_profile(uow, telegram_id)
    if profile is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with Telegram id {telegram_id}.")
    return UserOut(**asdict(profile))


async def get_user_payments(telegram_id: TelegramId, uow: AppUowDep) -> list[PaymentOut]:
    payments = await user_payments(uow, telegram_id)
    if payments is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with Telegram id {telegram_id}.")
    return [PaymentOut(**asdict(payment)) for payment in payments]


async def get_stats(uow: AppUowDep) -> StatsOut:
    return StatsOut(**asdict(await stats(uow)))


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_api_token)])
    router.add_api_route("/users/{telegram_id}", get_user, methods=["GET"])
    router.add_api_route("/users/{telegram_id}/payments", get_user_payments, methods=["GET"])
    router.add_api_route("/stats", get_stats, methods=["GET"])
    return router
