"""The unit of work of the update being handled, for code reached without handler data.

aiogram's ``FSMContext`` calls its storage with only a ``StorageKey``; the storage finds the
update's unit of work here. :class:`~db_manager.telegram.UnitOfWorkMiddleware` binds it
around the handler; a background job can bind its own. No table and no model here, so the
middleware can import this module without adding the FSM table to ``Base.metadata``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aiogram import Dispatcher
from aiogram.fsm.scene import SceneRegistry
from aiogram.fsm.storage.base import BaseStorage

from db_manager.uow import UnitOfWork, UnitOfWorkFactory

__all__ = ["UnitOfWorkStorage", "bind_unit_of_work", "current_unit_of_work", "nest_fsm"]

_CURRENT: ContextVar[UnitOfWork | None] = ContextVar("db_manager_current_uow", default=None)


def current_unit_of_work() -> UnitOfWork | None:
    """The unit of work bound here and still open, or None."""
    uow = _CURRENT.get()
    # A task spawned by a handler copies the context but outlives the update's unit of work.
    return None if uow is None or uow.closed else uow


@contextmanager
def bind_unit_of_work(uow: UnitOfWork) -> Iterator[None]:
    """Make :func:`current_unit_of_work` return ``uow`` inside the ``with``."""
    token = _CURRENT.set(uow)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class UnitOfWorkStorage(BaseStorage):
    """An FSM storage that runs on the current update's unit of work (see ``fsm.py``)."""

    uow_factory: UnitOfWorkFactory[Any] | None
    # What nest_fsm moved to the inner chain, so that a second setup moves the same again.
    nested_middlewares: list[Any] | None = None


def nest_fsm(dispatcher: Dispatcher, uow_factory: UnitOfWorkFactory[Any]) -> None:
    """With a :class:`UnitOfWorkStorage`, run aiogram's FSM middleware inside the update's
    unit of work and bind the storage to ``uow_factory``; any other storage is left alone.

    aiogram registers its FSM middleware as an outer ``update`` middleware, which runs before
    the (inner) unit-of-work middleware and reads the state there: that read would open a
    transaction of its own. Moved to the inner chain, registered after ours, it reads the
    state in the update's transaction; routers, filters and handlers see the same ``state``
    and ``raw_state`` as before. The outer ``update`` middleware of a
    ``SceneRegistry(dispatcher)`` needs ``state`` and moves with it; other outer middlewares
    stay where they are and so now run before the FSM one (an input check there still runs
    before any statement). Call it after registering the unit-of-work middleware
    (``setup_dispatcher`` does).
    """
    fsm = dispatcher.fsm
    if not isinstance(fsm.storage, UnitOfWorkStorage):
        return
    fsm.storage.uow_factory = uow_factory
    outer, inner = dispatcher.update.outer_middleware, dispatcher.update.middleware
    if fsm in outer:
        scenes = [m for m in outer if isinstance(getattr(m, "__self__", None), SceneRegistry)]
        moved: list[Any] = [fsm, *scenes]
        for middleware in moved:
            outer.unregister(middleware)
        fsm.storage.nested_middlewares = moved
    elif fsm in inner:  # set up again: re-register after the new unit-of-work middleware
        moved = fsm.storage.nested_middlewares or [fsm]
        for middleware in moved:
            if middleware in inner:
                inner.unregister(middleware)
    else:
        return  # Dispatcher(disable_fsm=True)
    for middleware in moved:
        inner.register(middleware)
