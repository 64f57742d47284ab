"""The floor: plain asyncpg behind FastAPI, no SQLAlchemy at all.

One statement per endpoint on a pooled connection (the UPDATE autocommits), so this is the
least any library on asyncpg can do; asyncpg's pool adds its reset query on release.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.common import Target, item_json

ITEM_SQL = "SELECT id, name, counter FROM bench__items WHERE id = $1"
BUMP_SQL = "UPDATE bench__items SET counter = counter + 1 WHERE id = $1"


def build(target: Target) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(target.dsn(), min_size=1, max_size=target.pool_size)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, request: Request) -> dict[str, Any]:
        row = await request.app.state.pool.fetchrow(ITEM_SQL, item_id)
        if row is None:
            return {}
        return item_json(row["id"], row["name"], row["counter"])

    @app.post("/items/{item_id}/bump")
    async def bump(item_id: int, request: Request) -> dict[str, int]:
        await request.app.state.pool.execute(BUMP_SQL, item_id)
        return {"id": item_id}

    @app.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(2.0):
                await request.app.state.pool.fetchval("SELECT 1")
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
