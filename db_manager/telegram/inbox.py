"""A durable webhook inbox: acknowledge an update once it is stored, apply it exactly once.

In ``[bot] processing = "inbox"`` the webhook route stores each update in
``db_manager__telegram_inbox`` (``INSERT ... ON CONFLICT DO NOTHING``), commits, and only then
answers 200; a redelivery is answered 200 and changes nothing. Workers, in this process or in
any other (``python -m app worker``), claim stored updates and feed them to the Dispatcher
through the same middleware as the webhook, so handlers get the same ``uow`` and
``uow_factory``.

Exactly once. A worker claims an update with one statement in the transaction that becomes
the handler's unit of work::

    UPDATE inbox SET status = 'done' WHERE (bot_id, update_id) = (
        SELECT ... WHERE status = 'pending' AND next_attempt_at <= now
          AND (chat_key IS NULL OR update_id = (the first pending update of its chat))
        ORDER BY update_id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING ...

The row stays locked until that transaction ends: the handler's writes and "done" commit
together or not at all. A crash (or a cut connection) at any moment rolls both back and the
update is pending again, at once, for any worker; the dedup table is not used in this mode.

Per-chat order. The chat key is aiogram's event context (the chat, else the user). An update
is claimable only when it is the first pending update of its chat: while an earlier one is
being applied (locked, so ``SKIP LOCKED`` passes it, and still pending to the others until
its transaction commits) or waits for its retry, its successors are held back. Different
chats run in parallel; a dead update no longer holds its chat.

Retries. A transient failure (database unavailable, Bot API network error, 5xx, 429; see
:func:`~db_manager.telegram.middleware.transient_failure`) is retried with exponential
backoff and jitter, or after Telegram's ``retry_after``, without limit; a permanent one (a
handler bug, a Bot API 400/403, outliving ``processing_timeout``) is retried until
``max_attempts`` attempts in all, then the update is ``dead`` with its error summary. The
handler runs in a SAVEPOINT: a failure rolls back to it and is recorded in the claiming
transaction, the row still locked, so no other worker retries it before its backoff. Only
when that transaction itself is lost (the connection cut) is the failure recorded in a
second short transaction, best effort; a worker that claims the update in between only
makes one more attempt.

Wake-up. The storing transaction sends ``NOTIFY db_manager_inbox`` (delivered at COMMIT) and
rings the local :class:`~db_manager.notify.Wakeup`; workers also poll every
``poll_interval`` seconds, which picks up retries that became due. SQLite has no
``SKIP LOCKED`` and one writer at a time: there the inbox works in a single process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import structlog
from aiogram import Bot, Dispatcher
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from db_manager._sql import dialect_of, utcnow
from db_manager.base import Base
from db_manager.errors import (
    DatabaseUnavailable,
    is_connection_error,
    loggable,
    redact,
    summarize,
)
from db_manager.notify import Notifications, Wakeup
from db_manager.telegram.middleware import (
    INBOX_UOW_KEY,
    OUTCOME_KEY,
    Outcome,
    retry_after,
    transient_failure,
)
from db_manager.telegram.settings import TelegramSettings
from db_manager.uow import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "INBOX_CHANNEL",
    "Inbox",
    "InboxStatus",
    "TelegramInboxItem",
    "chat_key_of",
    "inbox_status",
    "purge_done",
    "retry_updates",
]

log = structlog.get_logger("db_manager.telegram")

INBOX_CHANNEL = "db_manager_inbox"
PENDING, DONE, DEAD = "pending", "done", "dead"
_ERROR_LIMIT = 2000


class TelegramInboxItem(Base):
    """One stored update: pending until a worker applies it, then done (or dead)."""

    __tablename__ = "db_manager__telegram_inbox"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # aiogram's event context: the chat's id, else the user's; None: no order to keep.
    chat_key: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)  # the update's JSON as Telegram sent it
    status: Mapped[str] = mapped_column(String(8), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts so far
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The queue: pending updates in order, and each chat's pending ones for NOT EXISTS.
        Index(
            "ix_db_manager__telegram_inbox_pending",
            "bot_id",
            "update_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_db_manager__telegram_inbox_pending_chat",
            "bot_id",
            "chat_key",
            "update_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_db_manager__telegram_inbox_finished_at", "finished_at"),
    )


def chat_key_of(update: Update) -> int | None:
    """The key that orders an update among others: its chat's id, else its user's."""
    context = UserContextMiddleware.resolve_event_context(update)
    if context.chat is not None:
        return context.chat.id
    if context.user is not None:
        return context.user.id
    return None


# -- statements, built once ----------------------------------------------------------------

_T = TelegramInboxItem
_VALUES = {
    "bot_id": bindparam("bot_id", type_=BigInteger()),
    "update_id": bindparam("update_id", type_=BigInteger()),
    "chat_key": bindparam("chat_key", type_=BigInteger()),
    "payload": bindparam("payload", type_=Text()),
    "status": literal_column("'pending'"),
    "attempts": literal_column("0"),
    # Two names for one value: a parameter used twice breaks the multi-row INSERT.
    "next_attempt_at": bindparam("due", type_=DateTime(timezone=True)),
    "received_at": bindparam("now", type_=DateTime(timezone=True)),
}
_SQLITE_INSERT = sqlite.insert(_T).values(_VALUES).on_conflict_do_nothing().returning(_T.update_id)
_PG_INSERT = postgresql.insert(_T).values(_VALUES).on_conflict_do_nothing().returning(_T.update_id)
# The NOTIFY rides in the INSERT's statement (one round trip) and only when a row was added.
_PG_STORE = (
    select(func.pg_notify(INBOX_CHANNEL, "")).select_from(_PG_INSERT.cte("stored"))
).add_columns(literal_column("1"))

# The state as a literal, not a parameter: a prepared statement's generic plan can then
# still use the partial indexes on ``status = 'pending'``.
_PENDING_LITERAL: ColumnElement[str] = literal_column("'pending'")
_queued = aliased(_T, name="queued")
_NOTIFY = select(func.pg_notify(INBOX_CHANNEL, ""))
_BATCH = 500  # updates per storing transaction at most

_earlier = aliased(_T, name="earlier")
# "The first pending update of its chat": a correlated lookup on the partial chat index,
# one probe per candidate. Written as NOT EXISTS the planner may turn it into an anti-join
# that scans every pending row (2-16 ms per claim with a backlog and stale statistics,
# against 0.15 ms; see docs/benchmarks.md).
_first_of_chat = (
    select(_earlier.update_id)
    .where(
        _earlier.bot_id == _queued.bot_id,
        _earlier.chat_key == _queued.chat_key,
        _earlier.status == _PENDING_LITERAL,
    )
    .order_by(_earlier.update_id)
    .limit(1)
    .scalar_subquery()
)
_candidate = (
    select(_queued.update_id)
    .where(
        _queued.bot_id == bindparam("p_bot_id"),
        _queued.status == _PENDING_LITERAL,
        _queued.next_attempt_at <= bindparam("p_now"),
        or_(_queued.chat_key.is_(None), _queued.update_id == _first_of_chat),
    )
    .order_by(_queued.update_id)
    .limit(1)
    .with_for_update(skip_locked=True)
    .correlate(None)
    .scalar_subquery()
)
_CLAIM = (
    update(_T)
    .where(_T.bot_id == bindparam("p_bot_id"), _T.update_id == _candidate)
    .values(status=literal_column("'done'"), finished_at=bindparam("p_now"))
    .returning(_T.update_id, _T.payload, _T.attempts, _T.chat_key)
)
# A failed attempt: its count, the row's next state, the error.
_FAILURE_VALUES: dict[str, Any] = {
    "attempts": bindparam("p_attempts"),
    "status": bindparam("p_status"),
    "next_attempt_at": bindparam("p_next_attempt_at"),
    "last_error": bindparam("p_last_error"),
    "finished_at": bindparam("p_finished_at"),
}
_RECORD_FAILURE = (
    update(_T)
    .where(
        _T.bot_id == bindparam("p_bot_id"),
        _T.update_id == bindparam("p_update_id"),
        _T.status == PENDING,
        _T.attempts == bindparam("p_seen_attempts"),
    )
    .values(_FAILURE_VALUES)
)


# In the claiming transaction, the row locked: no condition on its state is needed.
_FAIL_LOCKED = (
    update(_T)
    .where(_T.bot_id == bindparam("p_bot_id"), _T.update_id == bindparam("p_update_id"))
    .values(_FAILURE_VALUES)
)


def _connection_lost(exc: BaseException) -> bool:
    cause = exc.failure if isinstance(exc, _HandlerFailed) else exc
    return isinstance(cause, DatabaseUnavailable) or (
        isinstance(cause, Exception) and is_connection_error(cause)
    )


@dataclass(frozen=True, slots=True)
class _Claim:
    update_id: int
    attempts: int
    chat_key: int | None


class _HandlerFailed(Exception):
    """A failure an aiogram error handler of the app swallowed: the update still failed."""

    def __init__(self, failure: Exception) -> None:
        super().__init__(str(failure))
        self.failure = failure


class _TookTooLong(Exception):
    """The update outlived ``processing_timeout``: a permanent failure attempt."""


# -- the inbox -----------------------------------------------------------------------------


class Inbox:
    """The inbox of one bot: :meth:`store` for the webhook, workers for the rest.

    ``outbox`` (a callable ``(uow, bot_id) -> object with async send(method)``, e.g.
    :class:`db_manager.telegram.outbox.Outbox`) receives a method a handler returns, in the
    handler's transaction; without it the method is sent through the bot after the commit
    (best effort: a failure is logged).
    """

    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        uow_factory: UnitOfWorkFactory[Any],
        settings: TelegramSettings,
        *,
        notifications: Notifications | None = None,
        outbox: Any = None,
    ) -> None:
        self.bot = bot
        self.bot_id = bot.id
        self.dispatcher = dispatcher
        self.uow_factory = uow_factory
        self.settings = settings
        self.notifications = notifications
        self.outbox = outbox
        self.wakeup = notifications.subscribe(INBOX_CHANNEL) if notifications else Wakeup()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._busy = 0
        # Idle workers, woken one at a time (see _wake_one); a wake-up that found nobody
        # idle is kept in _missed for the next worker about to wait.
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._missed = False
        self._relay_task: asyncio.Task[None] | None = None

    # -- the webhook's side ----------------------------------------------------------------

    async def store(self, update: Update, payload: str | bytes) -> bool:
        """Store ``update`` (its raw JSON ``payload``) and commit; True if it was new.

        Raises what the database raises: the caller must not acknowledge then. Updates
        arriving while a store is in progress are stored together in the next transaction
        (one multi-row INSERT and one COMMIT for all of them): under Telegram's 40 parallel
        deliveries a commit serves many acknowledgements, and each caller still returns
        only after the commit that holds its update.
        """
        params: dict[str, Any] = {
            "bot_id": self.bot_id,
            "update_id": update.update_id,
            "chat_key": chat_key_of(update),
            "payload": payload.decode() if isinstance(payload, bytes) else payload,
        }
        params["now"] = params["due"] = utcnow()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((params, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # A caller that gives up (the client left) cancels its own future only: the batch
        # (another task) goes on for the others and skips a result nobody waits for.
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[:_BATCH]
            del self._waiting[:_BATCH]
            try:
                stored = await self._insert([params for params, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
                        future.add_done_callback(_retrieved)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for params, future in batch:
                update_id = params["update_id"]
                if not future.done():
                    future.set_result(update_id in stored)
                stored.discard(update_id)  # a second copy in the same batch is a duplicate

    async def _insert(self, rows: list[dict[str, Any]]) -> set[int]:
        async with self.uow_factory() as uow:
            connection = await uow.session.connection()
            postgres = connection.dialect.name == "postgresql"
            if postgres and len(rows) == 1:
                row = (await connection.execute(_PG_STORE, rows[0])).first()
                stored = set() if row is None else {rows[0]["update_id"]}
            else:
                statement = _PG_INSERT if postgres else _SQLITE_INSERT
                result = await connection.execute(statement, rows)
                stored = {int(value) for value in result.scalars()}
                if stored and postgres:
                    await connection.execute(_NOTIFY)
            if stored:
                uow.on_commit(self.wakeup.ring)
        return stored

    # -- the workers' side -----------------------------------------------------------------

    async def process_one(self) -> bool:
        """Claim one due update and apply it; False if none was due.

        Raises only when claiming itself failed (the database unavailable): the worker
        backs off. A failure of the update is recorded on its row.
        """
        claim: _Claim | None = None
        try:
            async with self.uow_factory() as uow:
                params = {"p_bot_id": self.bot_id, "p_now": utcnow()}
                connection = await uow.session.connection()
                row = (await connection.execute(_CLAIM, params)).first()
                if row is None:
                    return False
                claim = _Claim(row.update_id, row.attempts, row.chat_key)
                # The handler runs inside a SAVEPOINT: a failure undoes its writes and is
                # recorded while the row is still locked, so no other worker retries the
                # update before its backoff (2 round trips: SAVEPOINT, RELEASE).
                savepoint = await uow.session.begin_nested()
                try:
                    await self._apply(uow, row.payload)
                except Exception as exc:
                    if not savepoint.is_active or _connection_lost(exc):
                        raise  # committed by the handler, or the transaction is gone
                    await savepoint.rollback()
                    uow.clear_on_commit()  # what the failed handler meant to do after it
                    await connection.execute(_FAIL_LOCKED, self._failure_params(claim, exc))
                    return True
                if savepoint.is_active:
                    await savepoint.commit()
        except asyncio.CancelledError:
            if claim is not None:
                log.info("update returned to the inbox: cancelled", update_id=claim.update_id)
            raise
        except Exception as exc:
            if claim is None:
                raise
            await self._record_failure(claim, exc)
        return True

    async def _record_failure(self, claim: _Claim, exc: Exception) -> None:
        """Record a failure after the claiming transaction was lost (best effort)."""
        params = self._failure_params(claim, exc)
        try:
            async with self.uow_factory() as uow:
                connection = await uow.session.connection()
                await connection.execute(_RECORD_FAILURE, params)
        except Exception as record_error:
            # The update stays pending and due: it is retried when the database is back.
            log.warning(
                "could not record the failure of an update",
                update_id=claim.update_id,
                error=summarize(record_error),
            )

    async def _apply(self, uow: UnitOfWork, payload: str) -> None:
        update = Update.model_validate_json(payload, context={"bot": self.bot})
        outcome = Outcome()
        data = {INBOX_UOW_KEY: uow, OUTCOME_KEY: outcome}
        try:
            async with asyncio.timeout(self.settings.processing_timeout):
                result = await self.dispatcher.feed_update(self.bot, update, **data)
        except TimeoutError as exc:
            raise _TookTooLong(
                f"processing took longer than {self.settings.processing_timeout} s"
            ) from exc
        if outcome.failure is not None:
            raise _HandlerFailed(outcome.failure)
        if isinstance(result, TelegramMethod):
            if self.outbox is not None:
                await self.outbox(uow, self.bot_id).send(result)
            else:
                uow.on_commit(lambda: self._send_after_commit(result, update.update_id))

    async def _send_after_commit(self, method: TelegramMethod[Any], update_id: int) -> None:
        try:
            await self.bot(method)
        except Exception as exc:
            log.warning(
                "returned method not sent (configure the outbox to make it durable)",
                update_id=update_id,
                method=method.__api_method__,
                error=redact(summarize(exc), [self.bot.token]),
            )

    def _failure_params(self, claim: _Claim, exc: Exception) -> dict[str, Any]:
        cause = exc.failure if isinstance(exc, _HandlerFailed) else exc
        failure = transient_failure(cause)
        attempts = claim.attempts + 1
        now = utcnow()
        dead = failure is None and attempts >= self.settings.max_attempts
        delay = self.backoff(attempts)
        if isinstance(failure, TelegramRetryAfter):
            delay = max(delay, float(failure.retry_after))
        elif isinstance(failure, DatabaseUnavailable):
            delay = max(delay, float(retry_after(failure)))
        error = redact(f"{type(cause).__name__}: {summarize(cause)}", [self.bot.token])
        params = {
            "p_bot_id": self.bot_id,
            "p_update_id": claim.update_id,
            "p_seen_attempts": claim.attempts,
            "p_attempts": attempts,
            "p_status": DEAD if dead else PENDING,
            "p_next_attempt_at": now + dt.timedelta(seconds=delay),
            "p_last_error": error[:_ERROR_LIMIT],
            "p_finished_at": now if dead else None,
        }
        if failure is None:
            shown = loggable(cause, secrets=[self.bot.token])
            log.error(
                "update failed; dead letter" if dead else "update failed; will retry",
                update_id=claim.update_id,
                attempts=attempts,
                error=error,
                exc_info=True if shown is cause else shown,
            )
        else:
            log.warning(
                "update failed transiently; will retry",
                update_id=claim.update_id,
                attempts=attempts,
                retry_in=round(delay, 3),
                error=error,
            )
        return params

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: exponential, half of it jittered."""
        ceiling = min(
            self.settings.retry_max, self.settings.retry_base * 2.0 ** max(0, attempts - 1)
        )
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))

    # -- worker tasks ----------------------------------------------------------------------

    @property
    def running(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    @property
    def busy(self) -> int:
        """Workers applying an update right now."""
        return self._busy

    async def start(self, workers: int | None = None) -> None:
        """Start ``workers`` worker tasks (default ``[bot] workers``)."""
        count = self.settings.workers if workers is None else workers
        self._stopping = False
        self._stopped.clear()
        loop = asyncio.get_running_loop()
        for number in range(count):
            self._tasks.append(loop.create_task(self._work(number), name=f"inbox-worker-{number}"))
        if count and self._relay_task is None:
            self._relay_task = loop.create_task(self._relay(), name="inbox-wakeups")
        if count:
            log.info("inbox workers started", workers=count, bot_id=self.bot_id)

    def stop_claiming(self) -> None:
        """Let every worker finish its update and claim no more."""
        self._stopping = True
        self._stopped.set()
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def stop(self, within: float | None = None) -> None:
        """Stop claiming; updates in flight get ``within`` seconds (default ``[bot]
        drain_timeout``), then they are cancelled and roll back to pending."""
        self.stop_claiming()
        relay, self._relay_task = self._relay_task, None
        if relay is not None:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        deadline = self.settings.drain_timeout if within is None else within
        _, late = await asyncio.wait(tasks, timeout=deadline)
        if late:
            log.warning("inbox drain deadline passed; cancelling", updates=len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late)
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.error("inbox worker ended with an error", error=summarize(error))
        log.info("inbox workers stopped", bot_id=self.bot_id)

    async def _work(self, number: int) -> None:
        delay = 0.0
        while not self._stopping:
            try:
                self._busy += 1
                try:
                    found = await self.process_one()
                finally:
                    self._busy -= 1
                delay = 0.0
            except Exception as exc:
                delay = min(self.settings.retry_max, max(self.settings.poll_interval, delay * 2))
                log.warning(
                    "inbox worker cannot claim updates; backing off",
                    worker=number,
                    retry_in=delay,
                    error_type=type(exc).__name__,
                    error=summarize(exc),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopped.wait()
                continue
            if found:
                self._wake_idle()  # there may be more: one more worker joins
            elif not self._stopping:
                await self._wait_idle(self.settings.poll_interval)

    async def _relay(self) -> None:
        """Turn each ring of the wakeup (a NOTIFY, a local store) into one woken worker.

        Waking every idle worker for every stored batch would make all but one of them
        run an empty claim (three round trips each); a worker that finds an update wakes
        the next one instead, so a burst still spreads over all of them.
        """
        while not self._stopping:
            seen = self.wakeup.generation
            await self.wakeup.wait(seen, within=None)
            self._wake_one()

    def _wake_one(self) -> None:
        if not self._wake_idle():
            self._missed = True  # everyone is busy: the next one to go idle claims again

    def _wake_idle(self) -> bool:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    async def _wait_idle(self, within: float) -> None:
        if self._missed:
            self._missed = False
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(waiter)


def _retrieved(future: asyncio.Future[bool]) -> None:
    # The caller may have left (its request cancelled); the error is reported to those
    # who wait, never as "Future exception was never retrieved".
    if not future.cancelled():
        future.exception()


# -- operations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxStatus:
    """What an operator (or ``/health/ready``) wants to know about the inbox."""

    pending: int
    retrying: int  # pending after at least one failed attempt
    oldest_pending_age: float | None  # seconds
    dead: int
    done: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "retrying": self.retrying,
            "oldest_pending_age_seconds": self.oldest_pending_age,
            "dead": self.dead,
            "done": self.done,
        }


async def inbox_status(session: AsyncSession, *, bot_id: int | None = None) -> InboxStatus:
    """Counts by status and the age of the oldest pending update."""
    scope = [] if bot_id is None else [_T.bot_id == bot_id]
    counts = dict(
        (
            await session.execute(select(_T.status, func.count()).where(*scope).group_by(_T.status))
        ).all()
    )
    retrying, oldest = (
        await session.execute(
            select(func.count().filter(_T.attempts > 0), func.min(_T.received_at)).where(
                _T.status == PENDING, *scope
            )
        )
    ).one()
    age = None
    if oldest is not None:
        if oldest.tzinfo is None:  # SQLite gives naive datetimes back
            oldest = oldest.replace(tzinfo=dt.UTC)
        age = max(0.0, (utcnow() - oldest).total_seconds())
    return InboxStatus(
        pending=int(counts.get(PENDING, 0)),
        retrying=int(retrying or 0),
        oldest_pending_age=age,
        dead=int(counts.get(DEAD, 0)),
        done=int(counts.get(DONE, 0)),
    )


async def retry_updates(
    session: AsyncSession,
    *,
    update_ids: list[int] | None = None,
    dead: bool = False,
    bot_id: int | None = None,
) -> int:
    """Make updates due again with a fresh attempt count: the given ones (dead or waiting
    for a retry) or, with ``dead=True``, every dead one. Returns how many."""
    if update_ids is None and not dead:
        raise ValueError("name update ids or pass dead=True")
    conditions = [_T.status.in_([PENDING, DEAD]) if update_ids is not None else _T.status == DEAD]
    if update_ids is not None:
        conditions.append(_T.update_id.in_(update_ids))
    if bot_id is not None:
        conditions.append(_T.bot_id == bot_id)
    result = await session.execute(
        update(_T)
        .where(*conditions)
        .values(status=PENDING, attempts=0, next_attempt_at=utcnow(), finished_at=None)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count and dialect_of(session) == "postgresql":
        await session.execute(select(func.pg_notify(INBOX_CHANNEL, "")))
    return count


async def purge_done(session: AsyncSession, *, older_than: dt.timedelta) -> int:
    """Delete done updates finished more than ``older_than`` ago; returns how many.

    Keep them at least as long as Telegram may redeliver (a day is plenty): a done row is
    what makes a late redelivery a no-op.
    """
    cutoff = utcnow() - older_than
    result = await session.execute(delete(_T).where(_T.status == DONE, _T.finished_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
