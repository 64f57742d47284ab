"""The declarative ``Base`` every model derives from, and the table naming rule.

Table names follow ``plugin_name__table_name`` (``app__users``, ``db_manager__telegram_updates``)
so that plugins sharing one database never collide. Either spell the whole name::

    class User(Base):
        __tablename__ = "app__users"

or give an abstract base a ``__plugin__`` and write only the table part::

    class AppModel(Base):
        __abstract__ = True
        __plugin__ = "app"

    class User(AppModel):
        __tablename__ = "users"          # becomes "app__users"

A name that is not of that form, or longer than PostgreSQL's 63-character identifier
limit, is refused when the class is created.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from db_manager.errors import TableNameError

__all__ = ["MAX_IDENTIFIER_LENGTH", "NAMING_CONVENTION", "Base", "check_table_name"]

MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_PART = r"[a-z][a-z0-9_]*[a-z0-9]|[a-z]"
_TABLE_NAME = re.compile(rf"^(?:{_PART})__(?:{_PART})$")
_PLUGIN_NAME = re.compile(rf"^(?:{_PART})$")


def check_table_name(name: str, *, model: str = "model") -> str:
    """Return ``name`` if it follows ``plugin_name__table_name``; raise TableNameError if not."""
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise TableNameError(
            f"{model}: table name {name!r} has {len(name)} characters; PostgreSQL allows "
            f"{MAX_IDENTIFIER_LENGTH}. Shorten the plugin or table part."
        )
    if not _TABLE_NAME.match(name) or name.count("__") != 1:
        raise TableNameError(
            f"{model}: table name {name!r} must look like 'plugin_name__table_name' "
            "(lowercase letters, digits and single underscores, the two parts joined by '__')."
        )
    return name


class Base(DeclarativeBase):
    """Declarative base with a naming convention for indexes and constraints."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    __plugin__: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        plugin = cls.__dict__.get("__plugin__")
        if plugin is not None and (not _PLUGIN_NAME.match(plugin) or "__" in plugin):
            raise TableNameError(
                f"{cls.__name__}: __plugin__ {plugin!r} must be lowercase letters, digits "
                "and single underscores."
            )
        name = cls.__dict__.get("__tablename__")
        if isinstance(name, str) and not cls.__dict__.get("__abstract__", False):
            prefix = cls.__plugin__
            if prefix is not None and "__" not in name:
                name = f"{prefix}__{name}"
                cls.__tablename__ = name
            check_table_name(name, model=cls.__name__)
        super().__init_subclass__(**kwargs)
