"""What of a driver error may be logged or returned: one line, no parameter values while
``hide_parameters`` is on, no secret. Re-exported by :mod:`db_manager.errors`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["loggable", "redact", "sqlstate", "summarize"]


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
        first = _without_values(first, orig, sqlstate(exc))
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


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE the server (or asyncpg) gave ``exc``, if any: a SQLAlchemy error's
    driver exception, or a driver exception that reached us unwrapped."""
    orig = getattr(exc, "orig", exc)
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
