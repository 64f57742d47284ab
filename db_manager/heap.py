"""Keep the start-up heap out of the cyclic garbage collector's way.

A web process imports SQLAlchemy, pydantic, FastAPI and aiogram: several hundred thousand
objects that live as long as the process. CPython's full (generation 2) collections walk
all of them, and under concurrency they run often (the objects of the requests in flight
are promoted by every young collection): 110-155 ms per full collection with aiogram
imported, about a quarter of the webhook's CPU per update (``docs/benchmarks.md``).
:func:`freeze_startup_heap` collects once, then moves every object alive at that point into
the permanent generation (:func:`gc.freeze`): later collections walk only what was created
after start-up. Nothing is disabled: garbage made later is collected as before; only cycles
among the frozen objects themselves are never collected again (there are none right after
the collection).

:func:`~db_manager.fastapi.database_lifespan` (``freeze_gc=True``) and
:func:`~db_manager.telegram.worker.run_worker` call it once start-up is done.
"""

from __future__ import annotations

import gc

import structlog

__all__ = ["freeze_startup_heap"]

log = structlog.get_logger("db_manager")

_frozen = False


def freeze_startup_heap() -> int:
    """Collect, then freeze the objects alive now; once per process (later calls do nothing).

    Returns how many objects were frozen (0 on a later call).
    """
    global _frozen
    if _frozen:
        return 0
    _frozen = True
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen for the garbage collector", objects=frozen)
    return frozen
