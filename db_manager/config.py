"""Settings: the ``[database]`` section of ``config.toml``, the environment, and arguments.

Precedence, highest first: explicit arguments, environment variables
(``DATABASE__HOST``, ``DATABASE__PASSWORD``, ...), the ``[database]`` section of the
config file (``$CONFIG_FILE``, default ``./config.toml``), then the defaults below.
The default is an SQLite file through aiosqlite, so nothing needs configuring to start.

Use :func:`load_settings` rather than calling the class: it turns every mistake into one
:class:`~db_manager.errors.ConfigError` line naming the file, the key and the reason.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, overload

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from db_manager.errors import ConfigError

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "SUPPORTED_DRIVERS",
    "DatabaseSettings",
    "SectionSettings",
    "load_settings",
    "resolve_config_file",
]

CONFIG_FILE_ENV = "CONFIG_FILE"
DEFAULT_CONFIG_FILE = "config.toml"
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
DEFAULT_SQLITE_DATABASE = "app.sqlite3"

# The config file that the settings being built right now read. A context variable, not a
# global: load_settings() sets it for the duration of one construction only.
_active_config_file: ContextVar[Path | None] = ContextVar("db_manager_config_file", default=None)

S = TypeVar("S", bound="SectionSettings")


class SectionSettings(BaseSettings):
    """Settings read from one ``[section]`` of ``config.toml`` and ``<SECTION>__*`` env vars.

    Subclass it for your own sections (the app does, for ``[app]`` and ``[bot]``).
    """

    section: ClassVar[str] = ""
    # Keys whose values never appear in error messages.
    secret_keys: ClassVar[frozenset[str]] = frozenset()

    # env_ignore_empty: an empty variable (BOT__TOKEN= in a compose file) means "not set".
    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False, env_ignore_empty=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.section:
            cls.model_config["env_prefix"] = f"{cls.section.upper()}__"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The one place where the order of sources is decided: arguments, env, config file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _active_config_file.get()
        if path is not None and cls.section in _read_toml(path):
            sources.append(
                TomlConfigSettingsSource(
                    settings_cls, toml_file=path, toml_table_header=(cls.section,)
                )
            )
        return tuple(sources)


class DatabaseSettings(SectionSettings):
    """The ``[database]`` section. Either the parts (``driver``, ``host``, ...) or one ``url``."""

    section: ClassVar[str] = "database"
    secret_keys: ClassVar[frozenset[str]] = frozenset({"password", "url"})

    driver: Literal["sqlite+aiosqlite", "postgresql+asyncpg"] = "sqlite+aiosqlite"
    user: str | None = None
    password: SecretStr | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = None
    url: SecretStr | None = None

    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    pool_timeout: float = Field(default=10.0, gt=0)
    pool_recycle: int = Field(default=1800, ge=-1)
    pool_pre_ping: bool = True

    echo: bool = False
    hide_parameters: bool = True
    create_tables: bool = True

    connect_timeout: float = Field(default=5.0, gt=0)
    command_timeout: float | None = Field(default=None, gt=0)
    statement_timeout: float | None = Field(default=None, gt=0)
    idle_in_transaction_timeout: float | None = Field(default=60.0, gt=0)
    # PostgreSQL >= 14: how often a running query checks that its client is still connected.
    # A connection force-closed while its query runs (what SQLAlchemy does when anyio's cancel
    # scopes cancel it again during cleanup) then stops that query within this interval instead
    # of running it to the end. 0 turns it off (needed for PostgreSQL 13 and older).
    client_connection_check_interval: float = Field(default=1.0, ge=0)
    sqlite_busy_timeout: float = Field(default=5.0, ge=0)
    application_name: str = "db_manager"
    pgbouncer: bool = False

    @field_validator("url")
    @classmethod
    def url_must_name_a_supported_driver(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            parsed = make_url(value.get_secret_value())
        except (ArgumentError, ValueError):
            # Never echo the parser's message: it quotes fragments of the URL (the password).
            raise ValueError(
                "not a valid database URL (percent-encode special characters in the password)"
            ) from None
        if parsed.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"unsupported driver {parsed.drivername!r}; use one of {', '.join(SUPPORTED_DRIVERS)}"
            )
        return value

    @model_validator(mode="after")
    def sqlite_takes_no_server_parts(self) -> DatabaseSettings:
        if self.url is None and self.driver.startswith("sqlite") and (self.host or self.port):
            raise ValueError("sqlite+aiosqlite takes only `database` (a file path or :memory:)")
        return self

    @property
    def sqlalchemy_url(self) -> URL:
        """The URL, built with ``URL.create`` so any character in the password works."""
        if self.url is not None:
            return make_url(self.url.get_secret_value())
        if self.driver.startswith("sqlite"):
            return URL.create(self.driver, database=self.database or DEFAULT_SQLITE_DATABASE)
        return URL.create(
            self.driver,
            username=self.user,
            password=self.password.get_secret_value() if self.password else None,
            host=self.host or "localhost",
            port=self.port or 5432,
            database=self.database,
        )

    @property
    def dialect(self) -> str:
        return self.sqlalchemy_url.get_backend_name()

    @property
    def redacted_url(self) -> str:
        """The URL with the password replaced by ``***``; safe to log."""
        return self.sqlalchemy_url.render_as_string(hide_password=True)

    def describe(self) -> dict[str, Any]:
        """What to log at start: the redacted URL and the pool settings, no secrets."""
        return {
            "url": self.redacted_url,
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout,
            "pool_recycle": self.pool_recycle,
            "pool_pre_ping": self.pool_pre_ping,
            "pgbouncer": self.pgbouncer,
        }


def resolve_config_file(config_file: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, or None when the default ``./config.toml`` does not exist.

    A file named explicitly (argument or ``$CONFIG_FILE``) must exist.
    """
    named = config_file if config_file is not None else os.environ.get(CONFIG_FILE_ENV)
    if named is None or named == "":
        default = Path(DEFAULT_CONFIG_FILE)
        return default if default.is_file() else None
    path = Path(named)
    if not path.is_file():
        origin = "argument" if config_file is not None else f"${CONFIG_FILE_ENV}"
        raise ConfigError(
            f"{path}: config file not found (named by {origin}); create it from "
            "config.toml.example or unset it to use the defaults",
            source=str(path),
        )
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read config file: {exc.strerror}", source=str(path)
        ) from None


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _active_config_file.set(path)
    try:
        yield
    finally:
        _active_config_file.reset(token)


@overload
def load_settings(
    *, config_file: str | os.PathLike[str] | None = None, **overrides: Any
) -> DatabaseSettings: ...


@overload
def load_settings(
    cls: type[S], *, config_file: str | os.PathLike[str] | None = None, **overrides: Any
) -> S: ...


def load_settings(
    cls: type[SectionSettings] = DatabaseSettings,
    *,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> SectionSettings:
    """Build ``cls`` from arguments, env and the config file, or raise one clear ConfigError."""
    path = resolve_config_file(config_file)
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)
        section = data.get(cls.section)
        if section is not None and not isinstance(section, dict):
            raise ConfigError(
                f"{path}: [{cls.section}] must be a table, not {type(section).__name__}",
                source=str(path),
                key=cls.section,
            )
    with _reading(path):
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise _config_error(cls, exc, path, data.get(cls.section) or {}, overrides) from None


def _config_error(
    cls: type[SectionSettings],
    exc: ValidationError,
    path: Path | None,
    section: dict[str, Any],
    overrides: dict[str, Any],
) -> ConfigError:
    lines = []
    first_key: str | None = None
    first_source: str | None = None
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(section)"
        top = str(error["loc"][0]) if error["loc"] else ""
        env_name = f"{cls.section.upper()}__{top.upper()}"
        if top in overrides:
            where = f"argument {top}"
        elif top and any(name.upper() == env_name for name in os.environ):
            where = f"environment variable {env_name}"
        elif path is not None and (top in section or not top):
            where = f"{path}: [{cls.section}] {key}"
        else:
            where = f"[{cls.section}] {key}"
        reason = error["msg"]
        if error["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling against config.toml.example)"
        elif top not in cls.secret_keys and "input" in error and error["type"] != "missing":
            reason = f"{reason} (got {error['input']!r})"
        lines.append(f"{where}: {reason}")
        if first_key is None:
            first_key, first_source = key, (str(path) if path else None)
    return ConfigError("; ".join(lines), source=first_source, key=first_key)
