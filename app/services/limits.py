"""What the app's columns can hold, and the checks that keep other input from any statement.

aiogram parses Telegram's JSON into any Python ``int`` and any ``str``; the database is
narrower. A ``BIGINT`` ends at 2**63 - 1 (asyncpg and sqlite3 refuse to even bind more),
PostgreSQL refuses NUL in text, ``VARCHAR(n)`` refuses longer strings on PostgreSQL and
SQLite stores them silently. So values are checked where they enter (the bot's edge
middleware and these helpers, called by the services before their first statement):

* ids: a Telegram user id is in ``1 .. 2**63 - 1``, an update id in ``0 .. 2**63 - 1``,
  chat and thread ids (keys of the conversation state) within a BIGINT;
* display text (names, message logs): NUL removed, cut to the column's length;
* identifiers that must stay exact (payment payloads and charge ids, referral codes,
  currencies): refused with :class:`InvalidInput` when they do not fit, never cut.

Lengths come from the models' own columns, so a column and its check cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sqlalchemy import String
from sqlalchemy.orm import InstrumentedAttribute

from app.services.errors import InvalidInput

__all__ = [
    "BIGINT_MAX",
    "MESSAGE_TEXT_MAX_LENGTH",
    "clean_text",
    "column_length",
    "is_bigint",
    "is_telegram_user_id",
    "is_update_id",
    "require_amount",
    "require_currency",
    "require_exact",
    "require_telegram_user_id",
    "without_nul",
]

BIGINT_MAX: Final = 2**63 - 1
# A Telegram message text has at most 4096 characters; a logged text is cut there.
MESSAGE_TEXT_MAX_LENGTH: Final = 4096
# ISO 4217 codes and Telegram Stars ("XTR") are three capital letters.
_CURRENCY: Final = re.compile(r"[A-Z]{3}")


def column_length(column: InstrumentedAttribute[Any]) -> int:
    """The length of a ``String(n)`` model column."""
    type_ = column.property.columns[0].type
    if not isinstance(type_, String) or type_.length is None:
        raise TypeError(f"{column} is not a String(n) column")
    return type_.length


def is_bigint(value: int) -> bool:
    """Whether a BIGINT column can hold ``value`` (chat ids, thread ids)."""
    return -BIGINT_MAX - 1 <= value <= BIGINT_MAX


def is_telegram_user_id(value: int) -> bool:
    return 1 <= value <= BIGINT_MAX


def is_update_id(value: int) -> bool:
    return 0 <= value <= BIGINT_MAX


def require_telegram_user_id(value: int) -> int:
    if not is_telegram_user_id(value):
        raise InvalidInput("telegram user id", "not in 1..2**63-1")
    return value


def without_nul(value: str) -> str:
    """``value`` without NUL characters (PostgreSQL's text and JSONB cannot hold them)."""
    return value.replace("\x00", "") if "\x00" in value else value


def clean_text(value: str, max_length: int) -> str:
    """``value`` without NUL characters, cut to ``max_length`` characters."""
    return without_nul(value)[:max_length]


def require_exact(value: str, max_length: int, what: str) -> str:
    """``value`` unchanged if it is 1..``max_length`` characters without NUL; else refused."""
    if not value:
        raise InvalidInput(what, "empty")
    if len(value) > max_length:
        raise InvalidInput(what, f"longer than {max_length} characters")
    if "\x00" in value:
        raise InvalidInput(what, "contains NUL")
    return value


def require_amount(value: int) -> int:
    """A payment amount: positive and within a BIGINT column."""
    if not 1 <= value <= BIGINT_MAX:
        raise InvalidInput("amount", "not in 1..2**63-1")
    return value


def require_currency(value: str) -> str:
    if _CURRENCY.fullmatch(value) is None:
        raise InvalidInput("currency", "not three capital letters")
    return value
