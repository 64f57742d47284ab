"""The outbox's sender: delivers the committed rows of ``db_manager__telegram_outbox``.

::

    sender = OutboxSender(bot, database.engine, settings, notifications=notifications)
    await sender.start()
    ...
    await sender.stop(settings.drain_timeout)

:func:`~db_manager.telegram.lifespan.telegram_lifespan` and
:func:`~db_manager.telegram.worker.run_worker` run one when the app passes ``outbox=``
(``[bot] outbox_sender``). What it guarantees:

* **Order** - per chat, in enqueue order: a chat's next row is claimed only once every
  earlier row of that chat is ``sent`` or ``dead``. A row waiting for a retry holds back its
  own chat only.
* **Several processes** - on PostgreSQL each send runs in a transaction that claims its row
  with ``FOR UPDATE SKIP LOCKED``, holds the lock during the HTTP call and marks the row in
  that same transaction right after Telegram's answer; a process that dies releases its
  locks with its connections. Several claims run at once in a process (the locks keep
  them apart), so the claim's round trips do not bound the rate. Each sender holds up to
  ``max_in_flight`` connections of its engine's pool while sending: count them in the
  connection budget, or give the sender an engine of its own. SQLite: one process, the
  same logic without row locks (the write lock is taken only to mark a row, never during
  the HTTP call).
* **Flood limits** - per sender process: ``private_chat_rate`` per private chat,
  ``group_chat_rate`` per group or channel, ``bot_rate`` for the bot (sliding windows in
  which a call counts from its start until its answer is back, so no network or event-loop
  delay can put more into one second at Telegram's end). A 429 pauses exactly what it
  names: the row's chat for ``retry_after`` seconds (its row is retried then, other chats
  go on), or the whole bot when the call has no chat.
* **Failures** - a network error, a 5xx or an undecodable answer is retried with
  exponential backoff and full jitter (``retry_base * 2**attempts``, at most ``retry_max``)
  until it succeeds. A 400 (or another permanent answer) makes the row ``dead`` with
  Telegram's description in ``last_error``; a 403 (bot blocked, kicked, user deactivated)
  too, and ``on_forbidden(chat_id, description)`` is awaited after that is committed. A
  database outage leaves rows pending; the sender backs off and goes on when it is back.
* **Wake-up** - after a commit that enqueued, the senders of this process are rung at once;
  on PostgreSQL the INSERT also notifies ``db_manager_outbox`` (delivered at COMMIT) for
  the senders of other processes (through :class:`db_manager.notify.Notifications`). A
  fallback poll (``poll_interval``) and a timer for the earliest retry cover the rest.

Delivery is at least once (see :mod:`db_manager.telegram.outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from sqlalchemy import (
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db_manager._sql import utcnow
from db_manager._sqlite import SQLITE_BEGIN_OPTION, SQLITE_FIRST_WRITE
from db_manager.cancellation import run_to_completion
from db_manager.errors import is_connection_error, redact, summarize
from db_manager.notify import Notifications, Wakeup
from db_manager.telegram.outbox import (
    _C,
    _TABLE,
    CHANNEL,
    ChatKind,
    OnForbidden,
    Status,
    _local_wakeups,
    load_method,
)
from db_manager.telegram.settings import TelegramSettings

__all__ = ["OutboxSender"]

log = structlog.get_logger("db_manager.telegram.outbox")

# -- claiming and marking -------------------------------------------------------------------------------

_CLAIM_COLUMNS = (_C.id, _C.chat_key, _C.chat_kind, _C.method, _C.payload, _C.attempts)
_earlier = _TABLE.alias("earlier")
# ORDER BY the chat index's own columns: the one order only that index gives without a
# sort, so the planner uses it even before the table has statistics.
_FIRST_OF_CHAT = (
    select(_earlier.c.id)
    .where(
        _earlier.c.status == Status.PENDING.value,
        _earlier.c.bot_id == _C.bot_id,
        _earlier.c.chat_key == _C.chat_key,
    )
    .order_by(_earlier.c.bot_id, _earlier.c.chat_key, _earlier.c.id)
    .limit(1)
    .scalar_subquery()
)
_CLAIM = (
    select(*_CLAIM_COLUMNS)
    .where(
        _C.status == Status.PENDING.value,
        _C.bot_id == bindparam("bot_id"),
        _C.next_attempt_at <= bindparam("now", type_=_C.next_attempt_at.type),
        # The chat's first pending row only. A correlated scalar subquery, not NOT EXISTS: it
        # runs as a parameterized lookup in the (bot_id, chat_key, id) index, where an
        # anti-join planned without statistics scanned every pending row per candidate.
        or_(
            _C.chat_key.is_(None),
            (_C.id == _FIRST_OF_CHAT) & _C.chat_key.not_in(bindparam("busy_chats", expanding=True)),
        ),
        _C.id.not_in(bindparam("busy_ids", expanding=True)),
    )
    .order_by(_C.id)
    .limit(1)
)
_CLAIM_LOCKED = _CLAIM.with_for_update(skip_locked=True, of=_TABLE)
_NEXT_RETRY = select(func.min(_C.next_attempt_at)).where(
    _C.status == Status.PENDING.value,
    _C.bot_id == bindparam("bot_id"),
    _C.next_attempt_at > bindparam("now", type_=_C.next_attempt_at.type),
)
_IS_PENDING = (_C.id == bindparam("row_id")) & (_C.status == Status.PENDING.value)
_MARK_SENT = (
    update(_TABLE)
    .where(_IS_PENDING)
    .values(
        status=Status.SENT.value,
        attempts=_C.attempts + 1,
        sent_at=bindparam("now", type_=_C.sent_at.type),
        last_error=None,
    )
)
_MARK_RETRY = (
    update(_TABLE)
    .where(_IS_PENDING)
    .values(
        attempts=_C.attempts + 1,
        next_attempt_at=bindparam("at", type_=_C.next_attempt_at.type),
        last_error=bindparam("error", type_=_C.last_error.type),
    )
)
_MARK_DEAD = (
    update(_TABLE)
    .where(_IS_PENDING)
    .values(
        status=Status.DEAD.value,
        attempts=_C.attempts + 1,
        last_error=bindparam("error", type_=_C.last_error.type),
    )
)

# Flood control counts a call from its start until its answer came back: Telegram receives
# it somewhere in between, however late the network or our event loop delivers it. A
# window kept on start times alone needs a guess of that delay (40 ms, then 100 ms, were
# both beaten on a loaded host: 32 and 33 calls in one second at the receiver). This is
# only clock granularity.
_WINDOW_MARGIN = 0.01
_ERROR_LENGTH = 500
# SQLite: the sender's reads take no write lock (db_manager._sqlite); ignored elsewhere.
_READ: Final[dict[str, Any]] = {SQLITE_BEGIN_OPTION: SQLITE_FIRST_WRITE}
_PG_CLAIMERS = 8  # at most; half of max_in_flight
_ANSWER_POLL = 0.005  # seconds between looks while the window waits for an answer


class _Window:
    """At most ``count`` claims in any ``seconds``: the times of the recent ones, a place
    reserved before a claim and given back if the claim finds nothing."""

    __slots__ = ("count", "seconds", "times")

    def __init__(self, rate: float) -> None:
        self.count = max(1, int(rate))
        self.seconds = self.count / rate
        self.times: deque[float] = deque()

    def next_allowed(self, now: float) -> float:
        times = self.times
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) < self.count:
            return now
        return times[-self.count] + self.seconds

    def reserve(self, now: float) -> float:
        self.times.append(now)
        return now

    def give_back(self, reserved: float) -> None:
        with contextlib.suppress(ValueError):
            self.times.remove(reserved)


class _SendWindow:
    """At most ``count`` calls that Telegram can see in any ``seconds``.

    A call may reach Telegram at any moment between its start and its answer, so it holds
    its place from its start until ``seconds`` after its answer. A new call starts only
    when fewer than ``count`` earlier calls could still share a window with it.
    """

    __slots__ = ("answered", "count", "open", "seconds")

    def __init__(self, rate: float) -> None:
        self.count = max(1, int(rate))
        self.seconds = self.count / rate + _WINDOW_MARGIN
        self.answered: deque[float] = deque()  # answer times, in order
        self.open = 0  # started, not answered yet

    def next_allowed(self, now: float) -> float | None:
        """When a call may start; None: only once a call in flight is answered."""
        answered = self.answered
        while answered and answered[0] <= now - self.seconds:
            answered.popleft()
        excess = len(answered) + self.open - self.count
        if excess < 0:
            return now
        if excess >= len(answered):
            return None
        return answered[excess] + self.seconds

    def start(self) -> None:
        self.open += 1

    def finish(self, now: float) -> None:
        self.open -= 1
        self.answered.append(now)


@dataclass(slots=True)
class _Job:
    row_id: int
    chat_key: int | None
    chat_kind: str
    method: str
    payload: dict[str, Any]
    attempts: int


@dataclass(slots=True)
class _Outcome:
    statement: Any
    params: dict[str, Any]
    forbidden: str | None = None  # Telegram's description of a 403


class OutboxSender:
    """Delivers the outbox rows of ``bot`` (one per process and bot; see the module docstring).

    ``engine`` is the database's ``AsyncEngine`` (``database.engine``): the sender runs plain
    Core transactions of its own on it, never a caller's unit of work. ``notifications``
    (started by the caller) wakes it at other processes' commits; without it the sender wakes
    at local commits and on its poll. ``max_in_flight`` calls are sent at once (different
    chats); ``db_backoff_max`` bounds the wait between attempts while the database is down.
    """

    def __init__(
        self,
        bot: Bot,
        engine: AsyncEngine,
        settings: TelegramSettings,
        *,
        notifications: Notifications | None = None,
        on_forbidden: OnForbidden | None = None,
        max_in_flight: int = 8,
        db_backoff_max: float = 5.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.bot = bot
        self.engine = engine
        self.settings = settings
        self.on_forbidden = on_forbidden
        self.max_in_flight = max_in_flight
        self.db_backoff_max = db_backoff_max
        self._wakeup = notifications.subscribe(CHANNEL) if notifications else Wakeup()
        self._locking = engine.dialect.name == "postgresql"
        self._claim = _CLAIM_LOCKED if self._locking else _CLAIM
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        # Claiming loops: on PostgreSQL several claims run at once (row locks keep them
        # apart), so a claim's round trips do not bound the rate; SQLite claims one at a time.
        self._claimers = max(1, min(max_in_flight // 2, _PG_CLAIMERS)) if self._locking else 1
        self._stopping = False
        # Flood control, monotonic seconds.
        # The bot's window twice: places reserved before a claim (so no more claims run than
        # may be sent), and the send times themselves, kept at the moment of the HTTP call.
        self._bot_window = _Window(settings.bot_rate)
        self._send_window = _SendWindow(settings.bot_rate)
        self._bot_paused_until = 0.0
        self._chat_next: dict[int, float] = {}
        self._chat_gap = {
            ChatKind.PRIVATE.value: 1 / settings.private_chat_rate + _WINDOW_MARGIN,
            ChatKind.GROUP.value: 1 / settings.group_chat_rate + _WINDOW_MARGIN,
        }
        self._busy_chats: set[int] = set()
        self._busy_ids: set[int] = set()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OutboxSender bot_id={self.bot.id} {state} in_flight={len(self._tasks)}>"

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._loops)

    @property
    def in_flight(self) -> int:
        """Calls being sent right now."""
        return len(self._busy_ids)

    async def start(self) -> None:
        """Start sending (no-op if running). Rows committed before the start are sent too."""
        if self.running:
            return
        self._stopping = False
        _local_wakeups.setdefault(self.bot.id, []).append(self._wakeup)
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._run()) for _ in range(self._claimers)]

    async def stop(self, deadline: float | None = None) -> None:
        """Stop claiming; give the calls in flight ``deadline`` seconds (default
        ``drain_timeout``) to finish, then cancel them: a cancelled row stays pending."""
        self._stopping = True
        wakeups = _local_wakeups.get(self.bot.id, [])
        with contextlib.suppress(ValueError):
            wakeups.remove(self._wakeup)
        if not wakeups:
            _local_wakeups.pop(self.bot.id, None)
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks = list(self._tasks)
        if not tasks:
            return
        within = self.settings.drain_timeout if deadline is None else deadline
        _done, pending = await asyncio.wait(tasks, timeout=max(0.0, within))
        if pending:
            log.warning("outbox sends cancelled at stop; they stay pending", count=len(pending))
            for pending_task in pending:
                pending_task.cancel()
            await asyncio.wait(pending)

    # -- the claiming loop -------------------------------------------------------------------

    async def _run(self) -> None:
        """One claiming loop: claim a row, hand it to a send task, claim the next one."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            seen = self._wakeup.generation
            reserved = await self._reserve_bot_window()
            await self._slots.acquire()
            claimed: asyncio.Future[bool | None] = loop.create_future()
            try:
                task = loop.create_task(self._slot(claimed))
            except BaseException:
                self._slots.release()
                raise
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            try:
                found = await claimed
                if found is not True:
                    self._bot_window.give_back(reserved)
                delay = await self._idle_delay() if found is False else None
            except Exception as exc:
                self._bot_window.give_back(reserved)
                failures += 1
                if not is_connection_error(exc):
                    log.exception("outbox sender: unexpected database error; backing off")
                elif failures == 1 or failures % 20 == 0:  # one line per outage, not per try
                    log.warning(
                        "outbox sender: database unavailable; backing off",
                        error=summarize(exc, with_type=True),
                        failures=failures,
                    )
                await asyncio.sleep(self._db_backoff(failures))
                continue
            except BaseException:
                self._bot_window.give_back(reserved)
                raise
            failures = 0
            if delay is not None:
                await self._wakeup.wait(seen, within=delay)

    async def _reserve_bot_window(self) -> float:
        """Wait until the bot may send (its window, a bot-wide 429 pause); take the place."""
        while True:
            now = time.monotonic()
            ready = max(self._bot_paused_until, self._bot_window.next_allowed(now))
            if ready <= now:
                return self._bot_window.reserve(now)
            await asyncio.sleep(ready - now)

    async def _idle_delay(self) -> float:
        """Seconds to wait for a ring after finding nothing to claim: the poll interval, or
        less if a retry is due or a paused chat may send again before that."""
        delay = self.settings.poll_interval
        now = time.monotonic()
        if self._chat_next:
            soonest = min(self._chat_next.values())
            delay = min(delay, max(0.0, soonest - now) + 0.001)
        async with self.engine.connect() as connection:
            wall = utcnow()
            next_retry = await connection.scalar(
                _NEXT_RETRY, {"bot_id": self.bot.id, "now": wall}, execution_options=_READ
            )
        if next_retry is not None:
            if next_retry.tzinfo is None:  # SQLite gives naive UTC values back
                next_retry = next_retry.replace(tzinfo=dt.UTC)
            delay = min(delay, max(0.0, (next_retry - wall).total_seconds()) + 0.001)
        return delay

    def _db_backoff(self, failures: int) -> float:
        ceiling = min(self.db_backoff_max, self.settings.retry_base * 2 ** min(failures, 30))
        return random.uniform(0.05, max(0.05, ceiling))

    def _claim_params(self) -> dict[str, Any]:
        now = time.monotonic()
        expired = [chat for chat, ready in self._chat_next.items() if ready <= now]
        for chat in expired:
            del self._chat_next[chat]
        return {
            "bot_id": self.bot.id,
            "now": utcnow(),
            "busy_chats": [*self._chat_next, *self._busy_chats],
            "busy_ids": list(self._busy_ids),
        }

    # -- one send ----------------------------------------------------------------------------

    async def _slot(self, claimed: asyncio.Future[bool | None]) -> None:
        try:
            if self._locking:
                await self._send_locked(claimed)
            else:
                await self._send_unlocked(claimed)
        except Exception as exc:
            if not claimed.done():
                claimed.set_exception(exc)
            else:
                log.warning(
                    "outbox: the database failed after a send; the row stays pending and "
                    "will be sent again",
                    error=summarize(exc, with_type=True),
                )
        finally:
            if not claimed.done():
                claimed.cancel()
            self._slots.release()

    async def _send_locked(self, claimed: asyncio.Future[bool | None]) -> None:
        """PostgreSQL: claim, send and mark in one transaction holding the row lock."""
        connection = await self.engine.connect()
        try:
            await connection.begin()
            row = (await connection.execute(self._claim, self._claim_params())).first()
            job = self._take(row, claimed)
            if job is None:
                return
            try:
                outcome = await self._deliver(job)
                await connection.execute(outcome.statement, outcome.params)
                await connection.commit()
            finally:
                self._release(job)
            await self._after(job, outcome)
        finally:
            await run_to_completion(_close(connection))

    async def _send_unlocked(self, claimed: asyncio.Future[bool | None]) -> None:
        """SQLite: claim with a read (this process's own in-flight rows are excluded), send,
        then mark in a short write transaction."""
        async with self.engine.connect() as connection:
            claim = await connection.execute(
                self._claim, self._claim_params(), execution_options=_READ
            )
            row = claim.first()
            await connection.rollback()
        job = self._take(row, claimed)
        if job is None:
            return
        try:
            outcome = await self._deliver(job)
            async with self.engine.begin() as connection:
                await connection.execute(outcome.statement, outcome.params)
        finally:
            self._release(job)
        await self._after(job, outcome)

    def _take(self, row: Any, claimed: asyncio.Future[bool | None]) -> _Job | None:
        """Reserve the claimed row's chat; tell the loop (True: sending, False: nothing to
        claim, None: claimed a chat that is not free after all; the row stays pending)."""
        if claimed.done():  # the loop was stopped meanwhile: leave the row pending
            return None
        if row is None:
            claimed.set_result(False)
            return None
        job = _Job(row.id, row.chat_key, row.chat_kind, row.method, row.payload, row.attempts)
        now = time.monotonic()
        if job.chat_key is not None and (
            job.chat_key in self._busy_chats or self._chat_next.get(job.chat_key, 0.0) > now
        ):
            # Another claiming loop of this process took this chat after our claim began.
            claimed.set_result(None)
            return None
        self._busy_ids.add(job.row_id)
        if job.chat_key is not None:
            self._busy_chats.add(job.chat_key)
            gap = self._chat_gap.get(job.chat_kind)
            if gap is not None:
                self._chat_next[job.chat_key] = now + gap
        claimed.set_result(True)
        return job

    def _release(self, job: _Job) -> None:
        self._busy_ids.discard(job.row_id)
        if job.chat_key is not None:
            self._busy_chats.discard(job.chat_key)

    async def _pace(self) -> None:
        """Wait (row claimed) until the bot's send window has room and no bot-wide 429
        pause holds (one may have come in after this row's claim), and take the place."""
        while True:
            now = time.monotonic()
            allowed = self._send_window.next_allowed(now)
            ready = max(self._bot_paused_until, now + _ANSWER_POLL if allowed is None else allowed)
            if ready <= now:
                self._send_window.start()
                return
            await asyncio.sleep(ready - now)

    def _answered(self, job: _Job) -> None:
        """The call's answer is back (or it failed): its places in the windows run from now."""
        now = time.monotonic()
        self._send_window.finish(now)
        gap = self._chat_gap.get(job.chat_kind)
        if job.chat_key is not None and gap is not None:
            self._chat_next[job.chat_key] = max(self._chat_next.get(job.chat_key, 0.0), now + gap)

    async def _deliver(self, job: _Job) -> _Outcome:
        """Call the Bot API; the row's next state from the answer."""
        token = [self.bot.token]
        try:
            method = load_method(job.method, job.payload)
            await self._pace()
            try:
                await self.bot(method)
            finally:
                self._answered(job)
        except TelegramRetryAfter as exc:
            pause = max(1.0, float(exc.retry_after))
            self._pause(job, pause)
            return self._retry(job, pause, f"429: {exc.message}")
        except (TelegramServerError, TelegramNetworkError, ClientDecodeError) as exc:
            if isinstance(exc, TelegramAPIError) and _permanent_network_error(exc):
                return self._dead(job, redact(exc.message, token))
            return self._retry(job, self._backoff(job), redact(str(exc), token))
        except TelegramUnauthorizedError as exc:
            # The token was revoked or is wrong: nothing can be sent; keep the rows.
            log.error("outbox: the Bot API refuses the bot token (401); retrying later")
            return self._retry(job, self._backoff(job), redact(f"401: {exc.message}", token))
        except TelegramForbiddenError as exc:
            description = redact(exc.message, token)
            return self._dead(job, description, forbidden=description)
        except TelegramAPIError as exc:
            return self._dead(job, redact(exc.message, token))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a payload this aiogram cannot build, a session bug
            log.exception("outbox: the call could not be made; marked dead", row_id=job.row_id)
            return self._dead(job, redact(f"{type(exc).__name__}: {exc}", token))
        return _Outcome(_MARK_SENT, {"row_id": job.row_id, "now": utcnow()})

    def _pause(self, job: _Job, seconds: float) -> None:
        until = time.monotonic() + seconds
        if job.chat_key is None:
            self._bot_paused_until = max(self._bot_paused_until, until)
        else:
            self._chat_next[job.chat_key] = max(self._chat_next.get(job.chat_key, 0.0), until)
        log.warning(
            "outbox: flood control (429)",
            chat_id=job.chat_key,
            retry_after=seconds,
            method=job.method,
        )

    def _backoff(self, job: _Job) -> float:
        ceiling = min(
            self.settings.retry_max, self.settings.retry_base * 2 ** min(job.attempts, 30)
        )
        return random.uniform(0.0, ceiling)

    def _retry(self, job: _Job, seconds: float, error: str) -> _Outcome:
        log.info(
            "outbox: send failed; retrying",
            row_id=job.row_id,
            method=job.method,
            attempts=job.attempts + 1,
            retry_in=round(seconds, 3),
            error=error[:_ERROR_LENGTH],
        )
        at = utcnow() + dt.timedelta(seconds=seconds)
        return _Outcome(
            _MARK_RETRY, {"row_id": job.row_id, "at": at, "error": error[:_ERROR_LENGTH]}
        )

    def _dead(self, job: _Job, error: str, *, forbidden: str | None = None) -> _Outcome:
        log.warning(
            "outbox: the Bot API refused the call; marked dead",
            row_id=job.row_id,
            method=job.method,
            chat_id=job.chat_key,
            error=error[:_ERROR_LENGTH],
        )
        params = {"row_id": job.row_id, "error": error[:_ERROR_LENGTH]}
        return _Outcome(_MARK_DEAD, params, forbidden)

    async def _after(self, job: _Job, outcome: _Outcome) -> None:
        """After the commit: tell the app about a chat that refused the bot (403)."""
        if outcome.forbidden is None or self.on_forbidden is None:
            return
        chat_id = job.payload.get("chat_id")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            return  # an @channelusername: no numeric chat to report
        try:
            await self.on_forbidden(chat_id, outcome.forbidden)
        except Exception:
            log.exception("outbox: on_forbidden failed", chat_id=chat_id)


def _permanent_network_error(exc: TelegramAPIError) -> bool:
    # TelegramEntityTooLarge (413) is a TelegramNetworkError that a retry cannot cure.
    return type(exc).__name__ == "TelegramEntityTooLarge"


async def _close(connection: AsyncConnection) -> None:
    try:
        await connection.close()  # rolls back what is still open, releases the row lock
    except Exception:
        with contextlib.suppress(Exception):
            await connection.invalidate()
