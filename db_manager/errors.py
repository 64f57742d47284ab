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
    └── DatabaseUnavailable     the database cannot be reached (answer 503, retry later)
        ├── PoolExhausted       no pooled connection became free within pool_timeout
        └── CommitOutcomeUnknown the connection broke during COMMIT

Integrity violations are left as SQLAlchemy's :class:`sqlalchemy.exc.IntegrityError`
(they are deterministic and well known); the framework adapters map them to 409.
"""

from __future__ import annotations

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
    "UnitOfWorkStateError",
    "as_unavailable",
    "is_connection_error",
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
    """The database could not be reached: refused, reset, timed out or shut down.

    Nothing was committed unless the subclass says otherwise. Retrying later is safe.
    """

    retry_after: int = 1


class PoolExhausted(DatabaseUnavailable):
    """Every pooled connection stayed busy for ``pool_timeout`` seconds."""


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection broke while COMMIT was in flight; the transaction may or may not be saved.

    Callers must not report success. Make writes idempotent so a retry is safe.
    """


# Server-side codes that mean "the server went away or will not take us": connection
# exceptions (class 08), admin/crash shutdown, cannot connect now, too many connections.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked")


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached, not that the query was wrong."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, DatabaseUnavailable | sa_exc.TimeoutError):
        return True
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(state, str) and (state.startswith("08") or state in _UNAVAILABLE_SQLSTATES):
            return True
        if isinstance(exc, sa_exc.OperationalError) and any(
            text in str(orig) for text in _SQLITE_BUSY_MESSAGES
        ):
            return True
        cause = getattr(orig, "__cause__", None)
        return isinstance(cause, OSError | TimeoutError)
    return False


def as_unavailable(exc: BaseException, *, during_commit: bool = False) -> DatabaseUnavailable:
    """Wrap a connection-level failure in the matching :class:`DatabaseUnavailable`."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, DatabaseUnavailable):
        return exc
    reason = _reason(exc)
    if isinstance(exc, sa_exc.TimeoutError):
        return PoolExhausted(f"no database connection became free in time: {reason}")
    if during_commit:
        return CommitOutcomeUnknown(
            f"the database connection failed during COMMIT; the outcome is unknown: {reason}"
        )
    return DatabaseUnavailable(f"the database is unavailable: {reason}")


def summarize(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of an error (the driver's own message for SQLAlchemy errors): short
    enough for one log field, and free of the SQL text SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    if not text:
        return type(orig).__name__
    first = text.splitlines()[0]
    return f"{type(orig).__name__}: {first}" if with_type else first


def _reason(exc: BaseException) -> str:
    return summarize(exc, with_type=True)
