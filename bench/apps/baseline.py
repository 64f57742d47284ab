"""The hand-written baseline: what a careful developer writes without a library.

An engine and an ``async_sessionmaker`` built in the lifespan, and one dependency that yields
a session inside ``session.begin()`` with ``scope="function"`` (so the COMMIT happens before
the response, like the project's ``UowDep``). Same pool settings as the project variant.

On SQLite: aiosqlite's default setup (pysqlite's implicit deferred BEGIN before a write) on
the benchmark's WAL file, plus ``synchronous=NORMAL`` per connection, which SQLite recommends
with WAL and db_manager sets too, so both variants' commits cost the same fsyncs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.common import SELECT_1, Item, Target, item_json


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session, session.begin():
        yield session


def _sqlite_synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# scope="function": COMMIT when the handler returns, before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def build(target: Target) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            target.url(), pool_size=target.pool_size, max_overflow=0, pool_pre_ping=False
        )
        if target.sqlite_path:
            event.listen(engine.sync_engine, "connect", _sqlite_synchronous_normal)
        app.state.engine = engine
        app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

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
    async def ready(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(2.0):
                async with request.app.state.engine.connect() as conn:
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
