"""Commit positions: where on the primary's WAL a commit ended, for read-your-writes.

A position is the primary's ``pg_current_wal_insert_lsn()`` read *after* COMMIT returned:
every commit that finished before the query is at or before it. (Taken before COMMIT, in the
same round trip as other statements, it would precede the commit record, and a replica that
replayed up to it could still miss the commit.) That is one extra round trip, so positions
are opt-in: :meth:`CommitPositions.track` a unit of work to have one.

Concurrent callers share queries: a caller joins the next query to *start*, so N commits
finishing together cost about two queries, not N (``bench/replicas.py`` prints the ratio).
Positions travel as PostgreSQL's own text form (``16/B374D848``); clients treat them as
opaque.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog

from db_manager.errors import DatabaseUnavailable, summarize
from db_manager.uow import UnitOfWork

__all__ = ["POSITION_QUERY", "CommitPositions", "CommitTicket", "format_position", "parse_position"]

log = structlog.get_logger("db_manager.positions")

POSITION_QUERY: Final = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
_POSITION_TEXT: Final = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")

# One row of POSITION_QUERY on the primary, or the exception it failed with (never raises).
AskPosition = Callable[[], Awaitable[tuple[Any, ...] | BaseException]]


def format_position(position: int) -> str:
    """``position`` (a WAL byte offset) in PostgreSQL's ``pg_lsn`` text form."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def parse_position(text: str) -> int:
    """The WAL byte offset of a ``pg_lsn`` text; ValueError with a sentence if it is not one."""
    if not _POSITION_TEXT.fullmatch(text):
        raise ValueError("not a commit position (expected the form 16/B374D848)")
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class CommitTicket:
    """Filled after each commit of the unit of work it tracks (see
    :meth:`CommitPositions.track`): ``position`` is then at or past that commit; None before
    the first commit, or if the primary could not be asked (the commit itself stands)."""

    __slots__ = ("position",)

    def __init__(self) -> None:
        self.position: int | None = None

    @property
    def text(self) -> str | None:
        return None if self.position is None else format_position(self.position)


class CommitPositions:
    """Reads commit positions on the primary, sharing queries between concurrent callers."""

    def __init__(self, ask: AskPosition) -> None:
        self._ask = ask
        self._next: asyncio.Future[int] | None = None  # what the next query will answer
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # queries sent so far (bench, tests)

    async def current(self) -> int:
        """A position at or past every commit that finished before this call. Raises
        DatabaseUnavailable if the primary cannot be asked."""
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            if self._task is None:
                self._task = asyncio.create_task(self._run())
        # shield: a cancelled caller must not cancel the answer the other callers share.
        return await asyncio.shield(waiting)

    def track(self, uow: UnitOfWork) -> CommitTicket:
        """A ticket holding the position of ``uow``'s latest commit, filled right after each
        commit by an ``on_commit`` callback (an explicit ``await uow.commit()`` inside the
        block included)."""
        ticket = CommitTicket()

        async def fill() -> None:
            try:
                ticket.position = await self.current()
            except DatabaseUnavailable as exc:
                log.warning("commit position unavailable", error=str(exc))
            if not uow.closed:  # committed inside the block: follow the next commit too
                uow.on_commit(fill)

        uow.on_commit(fill)
        return ticket

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        waiting, self._next = self._next, None
        if waiting is not None and not waiting.done():
            waiting.cancel()

    async def _run(self) -> None:
        try:
            while (waiting := self._next) is not None:
                # Callers arriving from here on wait for the next query: this one may have
                # been answered before their commit.
                self._next = None
                self.queries += 1
                try:
                    answer = await self._ask()
                except BaseException:  # stopped meanwhile: nobody waits forever
                    waiting.cancel()
                    raise
                if isinstance(answer, BaseException):
                    waiting.set_exception(
                        DatabaseUnavailable(f"cannot read the commit position: {summarize(answer)}")
                    )
                    waiting.exception()  # retrieved here too: every caller may have left
                else:
                    waiting.set_result(int(answer[0]))
        finally:
            self._task = None
