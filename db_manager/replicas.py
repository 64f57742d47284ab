"""Replicas: the read path over PostgreSQL streaming replicas, lag-aware, with read-your-writes.

::

    [database]
    replicas = ["10.0.0.2:5432", "postgresql+asyncpg://reader:pw@10.0.0.3/app"]
    replica_max_lag = 5.0            # seconds
    replica_refresh_interval = 0.5   # seconds

    reader = database.reader                   # reads go to a usable replica, round robin
    ticket = database.replicas.track(uow)      # before the commit
    ...                                        # after it: ticket.position
    item = await reader.at(ticket.position).get(Item, 42)   # sees the commit

Contract:

* **Routing costs no round trip.** A background task (:class:`ReplicaSet`, started and
  stopped with the :class:`~db_manager.database.Database`) asks the primary for
  ``pg_current_wal_lsn()`` and every replica for ``pg_is_in_recovery()`` and
  ``pg_last_wal_replay_lsn()`` each ``replica_refresh_interval``; a read only looks at what
  the last refresh learned.
* **A replica is usable** when it answered the last refresh, is in recovery, and is at most
  ``replica_max_lag`` seconds behind. The lag is measured from positions, not from replay
  timestamps: a replica is as far behind as the time since the primary was first seen past
  the replica's replay position (so an idle primary never makes its replicas look late).
  Resolution: one refresh interval.
* **Reads spread round robin over usable replicas**; a read failing on one with a connection
  error marks it unusable (until a refresh finds it healthy) and is retried on the next one,
  then on the primary's read engine, which also serves when no replica is usable.
* **Read-your-writes by position** (:mod:`db_manager.positions`: opt-in, one round trip
  after COMMIT, shared by concurrent commits). ``reader.at(position)`` is served only by a
  replica whose known replay position is at or past it, else by the primary. Right after a
  write that is usually the primary: a replica qualifies once a refresh has seen it replay
  the position (within one refresh interval).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import structlog
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager.cancellation import run_to_completion
from db_manager.config import DatabaseSettings
from db_manager.engine import create_replica_engine
from db_manager.errors import ConfigError, DatabaseUnavailable, summarize
from db_manager.positions import (
    POSITION_QUERY,
    CommitPositions,
    CommitTicket,
    format_position,
    parse_position,
)
from db_manager.uow import UnitOfWork

__all__ = [
    "CommitTicket",
    "Replica",
    "ReplicaSet",
    "format_position",
    "parse_position",
    "replica_urls",
]

log = structlog.get_logger("db_manager.replicas")

_PRIMARY_QUERY: Final = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"
_REPLICA_QUERY: Final = (
    "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"
)


def replica_urls(settings: DatabaseSettings) -> list[URL]:
    """The URLs of ``settings.replicas``; ``host[:port]`` entries take the primary's user,
    password and database. Raises one-line :class:`ConfigError` for a bad entry."""
    if not settings.replicas:
        return []
    primary = settings.sqlalchemy_url
    if primary.get_backend_name() != "postgresql":
        raise ConfigError("[database] replicas: streaming replicas need postgresql+asyncpg")
    urls = []
    for index, entry in enumerate(settings.replicas):
        value = entry.get_secret_value().strip()
        where = f"[database] replicas[{index}]"
        if "://" in value:
            try:
                url = make_url(value)
            except (ArgumentError, ValueError):
                # Never echo the entry: it may hold a password.
                raise ConfigError(
                    f"{where}: not a valid database URL (percent-encode special characters)",
                    key=f"replicas.{index}",
                ) from None
            if url.drivername != primary.drivername:
                raise ConfigError(
                    f"{where}: driver {url.drivername!r} differs from the primary's "
                    f"{primary.drivername!r}",
                    key=f"replicas.{index}",
                )
        else:
            host, colon, port_text = value.rpartition(":") if ":" in value else (value, "", "")
            port = int(port_text) if port_text.isdigit() else 0
            if not host or (colon and not 1 <= port <= 65535):
                raise ConfigError(
                    f"{where}: expected a URL or host:port, got {value!r}",
                    key=f"replicas.{index}",
                )
            url = primary.set(host=host, port=port or 5432)
        urls.append(url)
    return urls


class Replica:
    """One replica and what the last refresh learned about it."""

    __slots__ = (
        "checked_at",
        "engine",
        "error",
        "lag_bytes",
        "lag_seconds",
        "name",
        "replay_position",
        "state",
        "sync_engine",
    )

    def __init__(self, name: str, engine: AsyncEngine) -> None:
        self.name = name
        self.engine = engine
        self.sync_engine = engine.sync_engine
        # unknown (not checked yet), ok, lagging, unreachable, not_in_recovery
        self.state = "unknown"
        self.replay_position = 0
        self.lag_seconds: float | None = None
        self.lag_bytes: int | None = None
        self.error: str | None = None
        self.checked_at: float | None = None

    def __repr__(self) -> str:
        return f"<Replica {self.name} {self.state}>"


class ReplicaSet:
    """The replicas of one process: their engines, their state, and the refresher task."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        *,
        max_lag: float,
        refresh_interval: float,
        check_timeout: float,
    ) -> None:
        self.replicas = tuple(replicas)
        self.usable: tuple[Replica, ...] = ()
        self.max_lag = max_lag
        self.refresh_interval = refresh_interval
        self.check_timeout = check_timeout
        self.primary_position = 0
        # What the refresher costs: ticks and their total wall time (bench/replicas.py).
        self.refreshes = 0
        self.refresh_seconds = 0.0
        self._turn = itertools.count()
        self._primary: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        # (when first seen, primary position), oldest first: the lag clock of every replica.
        self._seen: deque[tuple[float, int]] = deque(maxlen=4096)
        self.positions = CommitPositions(self._ask_position)

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> ReplicaSet | None:
        """The replicas of ``settings`` (engines built, nothing connected); None if there are
        none, so a process without replicas builds and runs nothing for them."""
        urls = replica_urls(settings)
        if not urls:
            return None
        replicas = [
            Replica(f"{url.host}:{url.port}", create_replica_engine(settings, url)) for url in urls
        ]
        return cls(
            replicas,
            max_lag=settings.replica_max_lag,
            refresh_interval=settings.replica_refresh_interval,
            check_timeout=min(
                settings.connect_timeout, max(1.0, 2 * settings.replica_refresh_interval)
            ),
        )

    def __repr__(self) -> str:
        return f"<ReplicaSet {len(self.usable)}/{len(self.replicas)} usable>"

    # -- routing (the hot path: no I/O, no lock) -------------------------------------------

    def candidates(self, min_position: int = 0) -> tuple[Replica, ...]:
        """Usable replicas in this read's round-robin order; with ``min_position``, only those
        known to have replayed it. Empty: the primary serves."""
        usable = self.usable
        count = len(usable)
        if count == 0:
            return usable
        start = next(self._turn) % count
        order = usable[start:] + usable[:start] if start else usable
        if min_position:
            return tuple(r for r in order if r.replay_position >= min_position)
        return order

    def mark_failed(self, replica: Replica, exc: BaseException) -> None:
        """A read on ``replica`` failed to connect: skip it until a refresh finds it healthy."""
        if replica.state != "unreachable":
            log.warning("replica unreachable", replica=replica.name, error=summarize(exc))
        replica.state = "unreachable"
        replica.error = summarize(exc)
        self.usable = tuple(r for r in self.usable if r is not replica)

    def replayed(self, position: int) -> bool:
        """True if a usable replica is known to have replayed ``position``."""
        return any(r.replay_position >= position for r in self.usable)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, primary: AsyncEngine) -> None:
        """Learn the replicas' state once, then keep refreshing it in the background.
        ``primary`` is the primary's read engine (autocommit: one round trip per query)."""
        self._primary = primary
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="db_manager replicas")

    async def stop(self) -> None:
        """Stop the refresher and close the replica pools."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.positions.stop()
        self.usable = ()
        for replica in self.replicas:
            await run_to_completion(replica.engine.dispose())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception:  # pragma: no cover - refresh() catches what the servers raise
                log.exception("replica refresh failed")

    async def refresh(self) -> None:
        """One round: the primary's position, then every replica's, concurrently."""
        started = time.perf_counter()
        primary = await self._ask_primary()
        checks = await asyncio.gather(*(self._ask(r.engine, _REPLICA_QUERY) for r in self.replicas))
        now = time.monotonic()
        if primary is not None and primary > self.primary_position:
            self.primary_position = primary
            self._seen.append((now, primary))
        for replica, answer in zip(self.replicas, checks, strict=True):
            self._update(replica, answer, now)
        positions = [r.replay_position for r in self.replicas if r.state != "unreachable"]
        floor = min(positions, default=0)
        while len(self._seen) > 1 and self._seen[0][1] <= floor:
            self._seen.popleft()
        self.usable = tuple(r for r in self.replicas if r.state == "ok")
        self.refreshes += 1
        self.refresh_seconds += time.perf_counter() - started

    def _update(
        self, replica: Replica, answer: tuple[Any, ...] | BaseException, now: float
    ) -> None:
        before = replica.state
        replica.checked_at = now
        if isinstance(answer, BaseException):
            replica.state, replica.error = "unreachable", summarize(answer)
        elif not answer[0]:
            replica.state, replica.error = "not_in_recovery", "the server is not a standby"
        else:
            replica.error = None
            replica.replay_position = int(answer[1] or 0)
            replica.lag_bytes = max(0, self.primary_position - replica.replay_position)
            replica.lag_seconds = self._lag(replica.replay_position, now)
            replica.state = "ok" if replica.lag_seconds <= self.max_lag else "lagging"
        if replica.state != before:
            log.info(
                "replica state", replica=replica.name, state=replica.state, error=replica.error
            )

    def _lag(self, replay: int, now: float) -> float:
        if replay >= self.primary_position:
            return 0.0
        for seen_at, position in self._seen:
            if position > replay:
                return now - seen_at
        return 0.0

    async def _ask_primary(self) -> int | None:
        if self._primary is None:
            return None
        answer = await self._ask(self._primary, _PRIMARY_QUERY)
        return None if isinstance(answer, BaseException) else int(answer[0])

    async def _ask_position(self) -> tuple[Any, ...] | BaseException:
        if self._primary is None:
            return DatabaseUnavailable("the replicas are not started")
        return await self._ask(self._primary, POSITION_QUERY)

    async def _ask(self, engine: AsyncEngine, query: str) -> tuple[Any, ...] | BaseException:
        """One row of ``query`` within ``check_timeout``, or the exception; never raises."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self.check_timeout), engine.connect() as conn:
                    row = (await conn.exec_driver_sql(query)).one()
                return tuple(row)
            except TimeoutError:
                return DatabaseUnavailable(f"no answer within {self.check_timeout:g}s")
            except DBAPIError as exc:
                # A pooled connection of a restarted server: once more on a fresh one.
                if attempt == 1 and exc.connection_invalidated:
                    continue
                return exc
            except Exception as exc:
                return exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- commit positions (db_manager.positions) ------------------------------------------

    async def commit_position(self) -> int:
        """See :meth:`CommitPositions.current`."""
        return await self.positions.current()

    def track(self, uow: UnitOfWork) -> CommitTicket:
        """See :meth:`CommitPositions.track`."""
        return self.positions.track(uow)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each replica's state and lag as of the last refresh (for a status route)."""
        now = time.monotonic()
        return [
            {
                "replica": r.name,
                "state": r.state,
                "usable": r in self.usable,
                "lag_seconds": None if r.lag_seconds is None else round(r.lag_seconds, 3),
                "lag_bytes": r.lag_bytes,
                "replay_position": format_position(r.replay_position),
                "checked_seconds_ago": None
                if r.checked_at is None
                else round(now - r.checked_at, 3),
                "error": r.error,
            }
            for r in self.replicas
        ]
