"""The peer: advanced-alchemy's FastAPI extension, used as its documentation shows.

``commit_mode="autocommit"``: its ASGI middleware commits when a 2xx response starts.
``provide_session()`` is the documented dependency. Same pool settings as the others.
"""

# No `from __future__ import annotations`: FastAPI must see the local SessionDep alias.
import asyncio
import time
from typing import Annotated, Any

from advanced_alchemy.extensions.fastapi import (
    AdvancedAlchemy,
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import SELECT_1, Item, Target, item_json


def build(target: Target) -> FastAPI:
    app = FastAPI()
    config = SQLAlchemyAsyncConfig(
        connection_string=target.url().render_as_string(hide_password=False),
        commit_mode="autocommit",
        create_all=False,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        engine_config=EngineConfig(pool_size=target.pool_size, max_overflow=0, pool_pre_ping=False),
    )
    alchemy = AdvancedAlchemy(config=config, app=app)
    SessionDep = Annotated[AsyncSession, Depends(alchemy.provide_session())]

    @app.get("/noop")
    async def noop(session: SessionDep) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, session: SessionDep) -> dict[str, Any]:
        item = await session.get(Item, item_id)
        if item is None:
            return {}
        return item_json(item.id, item.name, item.counter)

    @app.post("/items/{item_id}/bump")
    async def bump(item_id: int, session: SessionDep) -> dict[str, int]:
        await session.execute(
            update(Item).where(Item.id == item_id).values(counter=Item.counter + 1)
        )
        return {"id": item_id}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(2.0):
                async with config.get_engine().connect() as conn:
                    await conn.execute(SELECT_1)
        except Exception as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": {"status": "unavailable", "reason": str(exc)},
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
        latency = (time.perf_counter() - started) * 1000
        return JSONResponse(
            {"status": "ok", "database": {"status": "ok", "latency_ms": round(latency, 3)}}
        )

    return app
