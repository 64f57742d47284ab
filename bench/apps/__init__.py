"""The benchmarked apps. Each module has ``build(target) -> app``; every HTTP app serves
``GET /noop``, ``GET /items/{id}``, ``POST /items/{id}/bump`` and ``GET /health/ready``.

* ``project``  - db_manager: ``UowDep``, and ``ReaderDep`` for the read path (``/read/...``);
* ``project_bot`` - db_manager's webhook: the aiogram middleware and ``telegram_webhook_router``;
* ``baseline`` - hand-written: engine + ``async_sessionmaker`` in the lifespan, a
  ``scope="function"`` dependency yielding inside ``session.begin()``;
* ``peer``     - advanced-alchemy's FastAPI extension (``commit_mode="autocommit"``);
* ``floor``    - plain asyncpg, no SQLAlchemy;
* ``aiohttp``  - the webhook only: aiogram's ``SimpleRequestHandler`` on aiohttp with a
  hand-written session middleware doing the project's work (update dedup + one row).
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.common import Target

VARIANTS = ("project", "project_bot", "baseline", "peer", "floor", "aiohttp")
# On SQLite: db_manager against the hand-written baseline (issue 17).
SQLITE_VARIANTS = ("project", "baseline")


def build(variant: str, target: Target) -> Any:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    module = importlib.import_module(f"bench.apps.{variant}")
    return module.build(target)
