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

import re
from collections.abc import Iterable, Iterator

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
        state = _sqlstate(exc)
        if state is not None and (
            state.startswith(_TRANSIENT_CLASSES)
            or state in _TRANSIENT_SQLSTATES
            or state in _CONFLICT_SQLSTATES
        ):
            return True
        if isinstance(exc, sa_exc.OperationalError) and any(
            text in str(exc.orig) for text in _SQLITE_BUSY_MESSAGES
        ):
            return True
        cause = getattr(exc.orig, "__cause__", None)
        return isinstance(cause, OSError | TimeoutError)
    return False


def as_unavailable(exc: BaseException, *, during_commit: bool = False) -> DatabaseUnavailable:
    """Wrap a transient failure (see :func:`is_connection_error`) in the matching
    :class:`DatabaseUnavailable`; its message is one line, free of parameter values."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, DatabaseUnavailable):
        return exc
    reason = _reason(exc)
    state = _sqlstate(exc)
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


def summarize(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of an error (the driver's own message for SQLAlchemy errors): short
    enough for one log field, free of the SQL text SQLAlchemy appends and, while the
    engine's ``hide_parameters`` is on, of the parameter values the driver quotes."""
    orig = getattr(exc, "orig", None) or exc
    driver = _driver_exception(orig)
    text = str(orig).strip()
    if not text:
        return type(driver).__name__
    first = text.splitlines()[0]
    if getattr(exc, "hide_parameters", False):
        first = _without_values(first, orig, _sqlstate(exc))
    return f"{type(driver).__name__}: {first}" if with_type else first


def loggable(exc: BaseException, *, secrets: Iterable[str] = ()) -> BaseException:
    """``exc``, or a stand-in to log with its traceback when its text may hold what must not
    be logged: parameter values (a driver error while ``hide_parameters`` is on) or one of
    ``secrets`` (a bot token in an HTTP client's error), in it or in a chained exception.
    The stand-in has the same frames, the :func:`summarize` line as its message (``secrets``
    replaced by ``[secret]``) and no chained exception."""
    hidden = [secret for secret in secrets if secret]
    leaks = any(secret in text for text in _chain_texts(exc) for secret in hidden)
    if not leaks and not getattr(exc, "hide_parameters", False):
        return exc
    message = redact(f"{type(exc).__name__}: {summarize(exc, with_type=True)}", hidden)
    return _HiddenParameters(message).with_traceback(exc.__traceback__)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty one of ``secrets`` replaced by ``[secret]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return text


def _chain_texts(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        current = current.__cause__ or current.__context__


class _HiddenParameters(Exception):
    """What :func:`loggable` logs in place of an error whose text must not be logged."""


def _reason(exc: BaseException) -> str:
    return summarize(exc, with_type=True)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) else None


def _driver_exception(orig: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's emulated DBAPI one (asyncpg's
    ``InvalidPasswordError`` behind ``AsyncAdapt_asyncpg_dbapi.Error``)."""
    from sqlalchemy import exc as sa_exc

    cause = orig.__cause__
    if isinstance(orig, sa_exc.EmulatedDBAPIException) and cause is not None:
        return cause
    return orig


# asyncpg, encoding a parameter: "invalid input for query argument $1: <repr> (<reason>)".
_ARGUMENT = re.compile(
    r"^(?P<head>invalid input for query argument \$\d+"
    r"(?: in element #\d+ of executemany\(\) sequence)?): "
)
# Encoder reasons that name types and ranges only; any other reason may quote the value.
_SAFE_REASONS = (
    re.compile(r"value out of u?int\d+ range"),
    re.compile(r"'[A-Za-z_][\w.]*' object cannot be interpreted as an integer"),
    re.compile(r"an? \w+ is required \(got type [A-Za-z_][\w.]*\)"),
    re.compile(r"expected \w+, got [A-Za-z_][\w.]*"),
)
_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def _without_values(text: str, orig: BaseException, sqlstate: str | None) -> str:
    argument = _ARGUMENT.match(text)
    if argument is not None:
        # The encoder's own exception, two causes down: SQLAlchemy's <- asyncpg's <- it.
        encoder = getattr(_driver_exception(orig), "__cause__", None)
        reason = str(encoder) if encoder is not None else ""
        if not any(pattern.fullmatch(reason) for pattern in _SAFE_REASONS):
            reason = type(encoder).__name__ if encoder is not None else "invalid value"
        return f"{argument['head']}: [hidden] ({reason})"
    if sqlstate is not None and sqlstate.startswith("22"):
        # Data exceptions quote the offending value ('invalid input syntax for type integer:
        # "abc"', 'value "1e9" is out of range ...'); names in them are types, never secret.
        head, sep, _value = text.partition(": ")
        return _QUOTED.sub("[hidden]", head) + (f"{sep}[hidden]" if sep else "")
    return text
