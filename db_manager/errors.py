"""The exceptions db_manager raises.

Every error derives from :class:`DatabaseManagerError`::

    DatabaseManagerError
    ├── ConfigError             bad config.toml / environment; names file, key and reason
    ├── DatabaseNotStarted      Database used before start() or after dispose()
    ├── UnitOfWorkStateError    a UnitOfWork entered twice or used after it closed
    ├── ReadOnlyError           a write attempted through a read-only unit of work
    ├── TableNameError          a model whose table name breaks ``plugin__table``
    ├── SchemaError             create_all / drop_all failed
    ├── MissingExtra            an adapter imported without its extra (also an ImportError)
    └── DatabaseUnavailable     a retry later can succeed (answer 503 + Retry-After)
        ├── PoolExhausted       no pooled connection became free within pool_timeout
        ├── CommitOutcomeUnknown the connection broke during COMMIT
        └── TransactionConflict a serialization failure or deadlock rolled the work back

``DatabaseUnavailable`` is every failure a retry can cure: the database unreachable or
silent (client-side timeouts included), refusing the login (SQLSTATE class 28), out of
connections (53300), shutting down or recovering (57P01-57P03, 57P05), cancelling a
statement (57014: ``statement_timeout``) or a lock wait (55P03: ``lock_timeout``,
``NOWAIT``), and ``TransactionConflict`` (40001, 40P01). Integrity violations are left as
SQLAlchemy's :class:`sqlalchemy.exc.IntegrityError` (deterministic, a retry fails the same
way); the framework adapters map them to 409.

Driver messages pass through :func:`summarize` before db_manager logs or returns them: while
``hide_parameters`` is on (the default) the values a message quotes are replaced by
``[hidden]`` (asyncpg's ``invalid input for query argument $1: <value>``, PostgreSQL's
``invalid input syntax for type integer: "<value>"``).
"""

from __future__ import annotations

from db_manager._error_text import loggable, redact, sqlstate, summarize

__all__ = [
    "CommitOutcomeUnknown",
    "ConfigError",
    "DatabaseManagerError",
    "DatabaseNotStarted",
    "DatabaseUnavailable",
    "MissingExtra",
    "PoolExhausted",
    "ReadOnlyError",
    "SchemaError",
    "TableNameError",
    "TransactionConflict",
    "UnitOfWorkStateError",
    "as_unavailable",
    "is_connection_error",
    "loggable",
    "redact",
    "summarize",
]


class DatabaseManagerError(Exception):
    """Root of every db_manager error."""


class ConfigError(DatabaseManagerError):
    """The configuration is invalid. The message names the source, the key and the reason."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.key = key


class DatabaseNotStarted(DatabaseManagerError):
    """The Database was used before ``start()`` or after ``dispose()``."""


class UnitOfWorkStateError(DatabaseManagerError):
    """A UnitOfWork was entered twice or used after it was closed."""


class ReadOnlyError(DatabaseManagerError):
    """A write was attempted through a read-only unit of work."""


class TableNameError(DatabaseManagerError, TypeError):
    """A model's table name does not follow ``plugin_name__table_name`` or is too long."""


class SchemaError(DatabaseManagerError):
    """Creating or dropping tables failed."""


class MissingExtra(DatabaseManagerError, ImportError):
    """An adapter was imported without the optional dependencies of its extra.

    The message names the extra: ``pip install 'db_manager[aiogram]'``.
    """

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message)
        self.extra = extra
        self.name = name


class DatabaseUnavailable(DatabaseManagerError):
    """The database could not serve the request now: unreachable, silent, refusing the login,
    out of connections, restarting, or it cancelled the statement (a timeout).

    Nothing was committed unless the subclass says otherwise. Retrying later is safe.
    """

    retry_after: int = 1


class PoolExhausted(DatabaseUnavailable):
    """Every pooled connection stayed busy for ``pool_timeout`` seconds."""


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection broke while COMMIT was in flight; the transaction may or may not be saved.

    Callers must not report success. Make writes idempotent so a retry is safe.
    """


class TransactionConflict(DatabaseUnavailable):
    """The server rolled the transaction back to resolve a conflict with a concurrent one
    (serialization failure 40001, deadlock 40P01). Nothing was saved; retry the whole unit
    of work, at once or later."""


# SQLSTATEs of a refusal or an abort that a retry can cure. Classes 08 (connection
# exception) and 28 (invalid authorization: a rotated password, a role not allowed to log in)
# are matched by their first two characters.
_TRANSIENT_CLASSES = ("08", "28")
_TRANSIENT_SQLSTATES = frozenset(
    {
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "57P05",  # idle_session_timeout (the server closed an idle session)
        "57014",  # query_canceled: statement_timeout (or an operator's pg_cancel_backend)
        "55P03",  # lock_not_available: lock_timeout, NOWAIT
    }
)
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
# The server answered these during COMMIT with an error: the transaction did not commit.
_ANSWERED_SQLSTATES = _CONFLICT_SQLSTATES | {"57014", "55P03"}
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked")


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` is transient: a retry later can succeed, because the database could
    not be reached or refused us, or the server aborted the statement for a reason of the
    moment (see the module docstring). False for a wrong query or a constraint violation."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, DatabaseUnavailable | sa_exc.TimeoutError):
        return True
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if _transient_state(sqlstate(exc)):
            return True
        if isinstance(exc, sa_exc.OperationalError) and any(
            text in str(exc.orig) for text in _SQLITE_BUSY_MESSAGES
        ):
            return True
        cause = getattr(exc.orig, "__cause__", None)
        return isinstance(cause, OSError | TimeoutError) or _driver_lost_connection(cause)
    return _driver_lost_connection(exc)


def _transient_state(state: str | None) -> bool:
    return state is not None and (
        state.startswith(_TRANSIENT_CLASSES)
        or state in _TRANSIENT_SQLSTATES
        or state in _CONFLICT_SQLSTATES
    )


# asyncpg's own words for a connection that is gone; SQLAlchemy's asyncpg dialect matches
# the first in its disconnect check.
_CLOSED_MESSAGES = ("connection is closed", "connection was closed")


def _driver_lost_connection(exc: BaseException | None) -> bool:
    """An asyncpg exception that says the connection is gone or was refused for now.

    SQLAlchemy wraps the driver's errors, except those of its connect-time set-up: the
    asyncpg dialect registers its JSON codecs on each new connection (two queries) on the
    raw connection, so a server that shuts down or terminates the backend at that moment
    raises asyncpg's ``InterfaceError: connection is closed``, ``AdminShutdownError`` and
    the like as they are. Matched by module and name: asyncpg is an optional dependency.
    """
    if exc is None or not type(exc).__module__.startswith("asyncpg."):
        return False
    if _transient_state(sqlstate(exc)):
        return True
    # The protocol was interrupted mid-operation ("cannot switch to state ..."): that
    # connection is unusable, a new one is not.
    if type(exc).__name__ == "InternalClientError":
        return True
    return type(exc).__name__ == "InterfaceError" and str(exc).startswith(_CLOSED_MESSAGES)


def as_unavailable(exc: BaseException, *, during_commit: bool = False) -> DatabaseUnavailable:
    """Wrap a transient failure (see :func:`is_connection_error`) in the matching
    :class:`DatabaseUnavailable`; its message is one line, free of parameter values."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, DatabaseUnavailable):
        return exc
    reason = _reason(exc)
    state = sqlstate(exc)
    if isinstance(exc, sa_exc.TimeoutError):
        return PoolExhausted(f"no database connection became free in time: {reason}")
    if state in _CONFLICT_SQLSTATES:
        return TransactionConflict(
            f"the database rolled the transaction back (a concurrent one conflicted); "
            f"retry it: {reason}"
        )
    if during_commit and state not in _ANSWERED_SQLSTATES:
        return CommitOutcomeUnknown(
            f"the database connection failed during COMMIT; the outcome is unknown: {reason}"
        )
    if state is not None and state.startswith("28"):
        return DatabaseUnavailable(f"the database refused the login: {reason}")
    if state in ("57014", "55P03"):
        return DatabaseUnavailable(f"the database cancelled the statement: {reason}")
    if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "orig", None), TimeoutError):
        return DatabaseUnavailable(
            "the database did not answer within the client-side timeout (command_timeout)"
        )
    return DatabaseUnavailable(f"the database is unavailable: {reason}")


def _reason(exc: BaseException) -> str:
    return summarize(exc, with_type=True)
