"""An app's connections seen from the test: in use now, never leaked, and observed from outside.

Every test that drives an app ends with its pool given back (``checked_out(app) == 0``) and,
where connections may have been dropped on the floor, with no warning at garbage collection.
Rows are checked through :func:`observer_engine`, which shares nothing with the app's pool.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette

from db_manager import DatabaseSettings

__all__ = ["assert_no_leak_warnings", "checked_out", "observer_engine"]


def checked_out(app: Starlette) -> int:
    """Connections of the app's main pool (``app.state.engine``) in use right now."""
    return int(app.state.engine.pool.checkedout())


def observer_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An engine that shares nothing with the app's: NullPool, a fresh connection each time."""
    return create_async_engine(settings.sqlalchemy_url, poolclass=NullPool)


def assert_no_leak_warnings(caught: Iterable[warnings.WarningMessage] = ()) -> None:
    """Collect garbage and fail on any warning it raises, or in ``caught`` (what the test
    recorded itself). SQLAlchemy's pool finalizer warns "The garbage collector is trying to
    clean up non-checked-in connection" when a connection was never given back."""
    with warnings.catch_warnings(record=True) as more:
        warnings.simplefilter("always")
        gc.collect()
        gc.collect()
    messages = [str(w.message) for w in [*caught, *more]]
    assert not [m for m in messages if "non-checked-in" in m], messages
    assert messages == []
