"""UnitOfWork: one transaction, committed on success, rolled back on error, always closed.

::

    async with UnitOfWork(engine) as uow:
        await uow.session.execute(insert(Thing).values(name="x"))
    # committed here; an exception inside the block rolls back instead

Contract:

* **Lazy** - entering opens nothing; the session (and its pooled connection) appear on
  first use of :attr:`UnitOfWork.session`. A block that never touches it costs no round trip.
* **Commit only on a clean exit** - any exception, ``CancelledError`` and
  ``KeyboardInterrupt`` included, rolls back. A failed commit propagates; it is never
  swallowed, and a cleanup error never hides the original error.
* **Always gives the connection back** - rollback and close run in a task of their own that
  a cancellation (also anyio's repeated, level-triggered one) cannot abandon; the
  cancellation is re-raised afterwards.
* **A started COMMIT finishes** - once the block has ended cleanly, COMMIT and the release of
  the connection run in that task too: a cancellation arriving meanwhile (a client hanging
  up) cannot leave the outcome unknown; it is delivered once the commit is done, and the
  ``on_commit`` callbacks are then skipped with a warning.
* **Connection failures are typed** - they leave the block as
  :class:`~db_manager.errors.DatabaseUnavailable` (``CommitOutcomeUnknown`` during COMMIT).
* **Single use** - entering twice or using it after exit raises ``UnitOfWorkStateError``.
* ``await uow.commit()`` inside the block commits what is done so far; the block goes on in a
  new transaction. ``uow.on_commit(callback)`` runs ``callback`` after a successful commit only.

Subclass it to expose repositories as attributes (see ``app/unit_of_work``).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType, TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from db_manager._sqlite import SQLITE_BEGIN_OPTION, SQLITE_FIRST_WRITE
from db_manager.cancellation import run_to_completion
from db_manager.errors import (
    UnitOfWorkStateError,
    as_unavailable,
    is_connection_error,
    summarize,
)

__all__ = [
    "SESSION_OPTIONS",
    "BeginHook",
    "OnCommitCallback",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UnitOfWorkSession",
    "make_session_factory",
]

log = structlog.get_logger("db_manager.uow")

OnCommitCallback = Callable[[], Awaitable[object] | object]
BeginHook = Callable[[Connection], None]
U = TypeVar("U", bound="UnitOfWork")
_T = TypeVar("_T")


_HOOKS_KEY = "db_manager.begin_hooks"


class UnitOfWorkSession(Session):
    """The synchronous ``Session`` class behind a UnitOfWork's ``AsyncSession``.

    Begin hooks are found through one class-level ``after_begin`` listener (below) in
    ``session.info``. A listener registered on each session would cost an event-registry entry
    per unit of work and tie the session into a reference cycle that only the garbage
    collector frees (measured: a quarter of the webhook's CPU under load).
    """


@event.listens_for(UnitOfWorkSession, "after_begin")
def _run_begin_hooks(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    hooks: list[BeginHook] | None = session.info.get(_HOOKS_KEY)
    # Only the outermost transaction: a SAVEPOINT (begin_nested) is part of the same one.
    if hooks and transaction.parent is None:
        for hook in list(hooks):
            hook(connection)


@event.listens_for(UnitOfWorkSession, "after_begin")
def _begin_sqlite_at_first_write(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    # SQLite: the transaction begins with its first write or locking read, so the reads of a
    # unit of work never take the write lock (db_manager._sqlite). Not for a session joined
    # to a caller's connection (the testing plugin's), whose transaction is the caller's.
    if (
        transaction.parent is None
        and connection.dialect.name == "sqlite"
        and isinstance(session.bind, Engine)
    ):
        connection.execution_options(**_FIRST_WRITE)


_FIRST_WRITE: Final[Mapping[str, str]] = MappingProxyType({SQLITE_BEGIN_OPTION: SQLITE_FIRST_WRITE})


# The options of every session a UnitOfWork runs on, written once (the Database's factory,
# a UnitOfWork over a bare engine, and the testing plugin's savepoint-joined factory):
# objects stay readable after commit without a hidden lazy load; close() really rolls back;
# begin hooks are found through UnitOfWorkSession's class-level listener.
SESSION_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "expire_on_commit": False,
        "close_resets_only": False,
        "sync_session_class": UnitOfWorkSession,
    }
)


def make_session_factory(
    bind: AsyncEngine | AsyncConnection, **overrides: Any
) -> async_sessionmaker[AsyncSession]:
    """An ``async_sessionmaker`` with :data:`SESSION_OPTIONS` (``overrides`` added on top)."""
    return async_sessionmaker(bind, **{**SESSION_OPTIONS, **overrides})


class _State(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    CLOSED = "closed"


class UnitOfWork:
    """One unit of work over an engine or an ``async_sessionmaker``."""

    __slots__ = ("_begin_hooks", "_bind", "_callbacks", "_session", "_state")

    def __init__(self, bind: AsyncEngine | async_sessionmaker[AsyncSession]) -> None:
        self._bind = bind
        self._session: AsyncSession | None = None
        self._state = _State.NEW
        self._callbacks: list[OnCommitCallback] = []
        self._begin_hooks: list[BeginHook] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.value}>"

    @property
    def session(self) -> AsyncSession:
        """The session, created on first use. Raises if the unit of work is not active."""
        session = self._session
        if session is not None and self._state is _State.ACTIVE:
            return session
        self._require_active()
        if isinstance(self._bind, AsyncEngine):
            session = AsyncSession(bind=self._bind, **SESSION_OPTIONS)
        else:
            session = self._bind()
        self._session = session
        if self._begin_hooks:
            self._attach_hooks(session)
        return session

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def used_database(self) -> bool:
        """True once the session was asked for (and so may hold a connection)."""
        return self._session is not None

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise UnitOfWorkStateError(
                f"{type(self).__name__} is {self._state.value}: a unit of work is used once; "
                "take a fresh one from the uow_factory"
            )
        self._state = _State.ACTIVE
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is not _State.ACTIVE:
            return
        try:
            if self._session is not None:  # an unused unit of work has nothing to give back
                # COMMIT and the release of the connection run to completion: a cancellation
                # that arrives meanwhile (a client hanging up) waits for them, then propagates.
                await run_to_completion(
                    self._commit_and_close() if exc is None else self._discard()
                )
        except BaseException:
            if self._callbacks:  # committed, then the cancellation was delivered
                log.warning(
                    "on_commit callbacks skipped: cancelled during the commit",
                    callbacks=len(self._callbacks),
                )
            await run_to_completion(self._discard())
            raise
        finally:
            self._state = _State.CLOSED
        if exc is not None:
            if is_connection_error(exc):
                raise as_unavailable(exc) from exc
            return
        await self._run_callbacks()

    def on_commit(self, callback: OnCommitCallback) -> None:
        """Run ``callback()`` (sync or async) after the next successful commit.

        Callbacks are dropped on rollback; one that raises is logged and does not undo the commit.
        """
        self._require_active()
        self._callbacks.append(callback)

    def clear_on_commit(self) -> None:
        """Drop the ``on_commit`` callbacks registered so far: the work they follow was
        undone without ending the transaction (rolled back to a savepoint)."""
        self._callbacks.clear()

    def on_begin(self, hook: BeginHook) -> None:
        """Run ``hook(connection)`` inside each transaction this unit of work begins, until one
        commits; ``connection`` is the synchronous :class:`~sqlalchemy.engine.Connection`.

        The hook runs only if the database is used at all, so it adds no round trip to a unit
        of work that never touches it. The webhook uses it to record an update's id in the same
        transaction as the handler's writes.
        """
        self._require_active()
        first = not self._begin_hooks
        self._begin_hooks.append(hook)
        if first and self._session is not None:
            self._attach_hooks(self._session)

    def _attach_hooks(self, session: AsyncSession) -> None:
        sync_session = session.sync_session
        if isinstance(sync_session, UnitOfWorkSession):
            sync_session.info[_HOOKS_KEY] = self._begin_hooks  # the same list, kept current
        else:  # a caller's session factory with a sync_session_class of its own
            event.listen(sync_session, "after_begin", self._after_begin)

    def _after_begin(
        self, _session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        # Only the outermost transaction: a SAVEPOINT (begin_nested) is part of the same one.
        if transaction.parent is not None:
            return
        for hook in list(self._begin_hooks):
            hook(connection)

    async def commit(self) -> None:
        """Commit the work done so far and run the ``on_commit`` callbacks.

        The COMMIT runs to completion even if the caller is cancelled meanwhile; the
        cancellation is delivered afterwards (and the callbacks are then skipped).
        """
        self._require_active()
        if self._session is not None:
            await run_to_completion(self._commit_session())
        self._begin_hooks.clear()
        await self._run_callbacks()

    async def _commit_session(self) -> None:
        session = self._session
        assert session is not None  # callers check first
        try:
            await session.commit()
        except BaseException as exc:
            # Not logged here: the caller (or the framework adapter, once, with the
            # request path or update id) decides how to report it.
            self._callbacks.clear()
            if is_connection_error(exc):
                raise as_unavailable(exc, during_commit=True) from exc
            raise

    async def _commit_and_close(self) -> None:
        await self._commit_session()
        await self._close()

    async def rollback(self) -> None:
        """Roll back the work done so far; ``on_commit`` callbacks registered so far are dropped."""
        self._require_active()
        self._callbacks.clear()
        if self._session is not None:
            await run_to_completion(self._session.rollback())

    def _require_active(self) -> None:
        if self._state is _State.ACTIVE:
            return
        if self._state is _State.NEW:
            raise UnitOfWorkStateError(
                f"{type(self).__name__} is not entered; use it as `async with uow_factory() as uow:`"
            )
        raise UnitOfWorkStateError(
            f"{type(self).__name__} is already closed; open a new one from the uow_factory "
            "(background tasks and streams must not borrow a request's unit of work)"
        )

    async def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "on_commit callback failed",
                    callback=getattr(callback, "__qualname__", repr(callback)),
                )

    async def _close(self) -> None:
        session = self._session
        if session is not None:
            await session.close()

    async def _discard(self) -> None:
        """Roll back and close; log (never raise) a cleanup failure so the original error wins."""
        self._callbacks.clear()
        session = self._session
        if session is None:
            return
        try:
            await session.close()  # close() rolls back the transaction and returns the connection
        except Exception as exc:
            log.warning(
                "rollback during cleanup failed",
                error_type=type(exc).__name__,
                error=summarize(exc),
            )
            try:
                await session.invalidate()
            except Exception:  # pragma: no cover - the connection is already gone
                log.debug("invalidate after failed rollback failed")


class UnitOfWorkFactory(Generic[U]):
    """A zero-argument callable that returns a fresh unit of work: the thing frameworks get."""

    __slots__ = ("session_factory", "uow_class")

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        uow_class: type[U],
    ) -> None:
        self.session_factory = session_factory
        self.uow_class = uow_class

    def __call__(self) -> U:
        return self.uow_class(self.session_factory)

    @contextmanager
    def override(self, session_factory: async_sessionmaker[AsyncSession]) -> Iterator[None]:
        """Make this factory's units of work use ``session_factory`` inside the ``with``.

        For tests (``db_manager.testing`` binds them to a connection whose outer transaction
        is rolled back): everyone holding this factory, HTTP and bot alike, sees the change.
        """
        previous, self.session_factory = self.session_factory, session_factory
        try:
            yield
        finally:
            self.session_factory = previous

    def __repr__(self) -> str:
        return f"<UnitOfWorkFactory {self.uow_class.__name__}>"
