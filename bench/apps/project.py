"""This project over HTTP: ``UowDep`` for the unit-of-work rows, ``ReaderDep`` for the read path.

The webhook is a separate app (``project_bot``), as the hand-written baseline has no bot:
importing aiogram roughly doubles a process's heap, and with it the cost of every full
garbage collection, which would be charged to the HTTP rows otherwise.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import update

from bench.common import ITEM_BY_ID, BenchModel, Item, Target, item_json
from db_manager.fastapi import (
    ReaderDep,
    UowDep,
    database_lifespan,
    health_router,
    install_error_handlers,
)


def build(target: Target, **settings_overrides: Any) -> FastAPI:
    settings = target.settings(**settings_overrides)
    app = FastAPI(lifespan=database_lifespan(settings, metadata=BenchModel.metadata))
    install_error_handlers(app)

    @app.get("/noop")
    async def noop(uow: UowDep) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, uow: UowDep) -> dict[str, Any]:
        item = await uow.session.get(Item, item_id)
        if item is None:
            return {}
        return item_json(item.id, item.name, item.counter)

    @app.post("/items/{item_id}/bump")
    async def bump(item_id: int, uow: UowDep) -> dict[str, int]:
        await uow.session.execute(
            update(Item).where(Item.id == item_id).values(counter=Item.counter + 1)
        )
        return {"id": item_id}

    @app.get("/read/items/{item_id}")
    async def read_item(item_id: int, reader: ReaderDep) -> dict[str, Any]:
        item = await reader.get(Item, item_id)
        if item is None:
            return {}
        return item_json(item.id, item.name, item.counter)

    @app.get("/read/core/items/{item_id}")
    async def read_item_core(item_id: int, reader: ReaderDep) -> dict[str, Any]:
        row = (await reader.execute(ITEM_BY_ID, {"id": item_id})).first()
        if row is None:
            return {}
        return item_json(row.id, row.name, row.counter)

    # Included last: FastAPI checks an included router on every request that reaches it
    # (~7 us), so the hot routes above are matched first.
    app.include_router(health_router())
    return app
