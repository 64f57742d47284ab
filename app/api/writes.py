"""``/api`` writes, each safe to retry with an ``Idempotency-Key`` (db_manager.fastapi_idempotency).

``POST /api/users/{telegram_id}/premium`` grants premium (an operator's gift, a refund
dispute settled in the user's favour). ``POST /api/broadcast`` enqueues one message per
reachable user in the outbox and answers 202 with their number once that is committed
(the sender delivers them afterwards, within Telegram's flood limits); with a key, a
retried broadcast is answered from the first one and nobody gets it twice. The key, the grant and the stored answer commit in
one transaction: a client that lost the answer retries with the same key and gets the same
answer (``Idempotent-Replayed: true``), never a second effect. Keys belong to the bearer
token that sent them (its hash, never the token) and expire after 24 hours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field, field_validator

from app.api.auth import require_api_token
from app.api.responses import STATS_RESPONSES, USER_RESPONSES
from app.bot.outbox import BotOutbox, Outbox
from app.services import (
    BROADCAST_MAX_LENGTH,
    InvalidInput,
    broadcast,
    check_broadcast_text,
    ensure_novel_state,
)
from app.unit_of_work import AppUnitOfWork
from db_manager.fastapi_idempotency import IDEMPOTENCY_RESPONSES, IdempotentRoute, idempotent_uow

__all__ = ["BroadcastIn", "BroadcastOut", "PremiumGrant", "build_router", "client_identity"]

TelegramId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The user's Telegram id.")]


def client_identity(request: Request) -> str:
    """The scope of a client's keys: a hash of the API token (it ran after the token check)."""
    token: bytes = request.app.state.api_token
    return f"api-token:{hashlib.sha256(token).hexdigest()[:32]}"


# scope="function": the COMMIT (key, grant and stored answer) runs before the answer is sent.
AppIdempotentUowDep = Annotated[
    AppUnitOfWork, Depends(idempotent_uow(identity=client_identity), scope="function")
]

WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {**USER_RESPONSES, **IDEMPOTENCY_RESPONSES}
BROADCAST_RESPONSES: dict[int | str, dict[str, Any]] = {**STATS_RESPONSES, **IDEMPOTENCY_RESPONSES}


@dataclass(frozen=True, slots=True)
class PremiumGrant:
    """The user now has premium; ``granted`` is False when they already had it."""

    telegram_id: int
    premium: bool
    granted: bool


async def grant_premium(telegram_id: TelegramId, uow: AppIdempotentUowDep) -> PremiumGrant:
    user = await uow.users.get_by_telegram_id(telegram_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user with Telegram id {telegram_id}.")
    state = await ensure_novel_state(uow, user)
    granted = not state.premium
    state.premium = True
    await uow.session.flush()
    return PremiumGrant(telegram_id=telegram_id, premium=True, granted=granted)


class BroadcastIn(BaseModel):
    """The message for every reachable user: 1 to 4096 characters, as Telegram allows."""

    text: str = Field(min_length=1, max_length=BROADCAST_MAX_LENGTH)

    @field_validator("text")
    @classmethod
    def text_must_be_sendable(cls, value: str) -> str:
        try:
            return check_broadcast_text(value)
        except InvalidInput as exc:
            raise ValueError(exc.reason) from None


@dataclass(frozen=True, slots=True)
class BroadcastOut:
    """``enqueued`` messages, one per reachable user, committed and on their way."""

    enqueued: int


async def post_broadcast(
    body: BroadcastIn, request: Request, uow: AppIdempotentUowDep
) -> BroadcastOut:
    bot_id: int | None = request.app.state.settings.bot.bot_id
    if bot_id is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The bot is off: set [bot] token (BOT__TOKEN) to broadcast.",
        )
    count = await broadcast(uow, BotOutbox(Outbox(uow, bot_id)), body.text)
    return BroadcastOut(enqueued=count)


def build_router() -> APIRouter:
    router = APIRouter(
        prefix="/api",
        tags=["api"],
        dependencies=[Depends(require_api_token)],
        route_class=IdempotentRoute,
    )
    router.add_api_route(
        "/users/{telegram_id}/premium",
        grant_premium,
        methods=["POST"],
        responses=WRITE_RESPONSES,
        summary="Grant premium (retry safely with an Idempotency-Key)",
    )
    router.add_api_route(
        "/broadcast",
        post_broadcast,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        responses=BROADCAST_RESPONSES,
        summary="Send a message to every reachable user (retry safely with an Idempotency-Key)",
    )
    return router
