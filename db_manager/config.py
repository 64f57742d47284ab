"""Settings: the ``[database]`` section of ``config.toml``, the environment, and arguments.

Precedence, highest first: explicit arguments, environment variables
(``DATABASE__HOST``, ``DATABASE__PASSWORD``, ...), the ``[database]`` section of the
config file (``$CONFIG_FILE``, default ``./config.toml``), then the defaults below.
The default is an SQLite file through aiosqlite, so nothing needs configuring to start.

Use :func:`load_settings` rather than calling the class: it turns every mistake into one
:class:`~db_manager.errors.ConfigError` line naming the file, the key and the reason, and
never holding a secret (see :mod:`db_manager._config_errors`). An app with several sections
loads them with :func:`load_sections`, which also refuses a section nobody reads.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, overload

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from db_manager._config_errors import settings_error, unknown_sections, validation_error
from db_manager.errors import ConfigError

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "SUPPORTED_DRIVERS",
    "ConfigFile",
    "DatabaseSettings",
    "SectionSettings",
    "load_sections",
    "load_settings",
    "read_config",
    "resolve_config_file",
]

CONFIG_FILE_ENV = "CONFIG_FILE"
DEFAULT_CONFIG_FILE = "config.toml"
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
DEFAULT_SQLITE_DATABASE = "app.sqlite3"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file parsed once: its path and its tables. See :func:`read_config`."""

    path: Path
    data: Mapping[str, Any]


# The parsed config file that the settings being built right now read. A context variable,
# not a global: load_settings() sets it for the duration of one construction only.
_active_config: ContextVar[ConfigFile | None] = ContextVar("db_manager_config", default=None)

S = TypeVar("S", bound="SectionSettings")
S2 = TypeVar("S2", bound="SectionSettings")
S3 = TypeVar("S3", bound="SectionSettings")


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
        config = _active_config.get()
        if config is not None and cls.section in config.data:
            sources.append(_ParsedToml(settings_cls, config, cls.section))
        return tuple(sources)


class _ParsedToml(InitSettingsSource):
    """The ``[section]`` table of a file :func:`read_config` already parsed.

    pydantic-settings' ``TomlConfigSettingsSource`` reads and parses the file again for every
    settings class; it is an ``InitSettingsSource`` over the table it parsed, which is what
    this is, over the table parsed once.
    """

    def __init__(self, settings_cls: type[BaseSettings], config: ConfigFile, section: str) -> None:
        super().__init__(settings_cls, dict(config.data.get(section, {})))
        self._config_file = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(toml_file={self._config_file.path})"


class DatabaseSettings(SectionSettings):
    """The ``[database]`` section. Either the parts (``driver``, ``host``, ...) or one ``url``."""

    section: ClassVar[str] = "database"
    secret_keys: ClassVar[frozenset[str]] = frozenset({"password", "url", "replicas"})

    driver: Literal["sqlite+aiosqlite", "postgresql+asyncpg"] = "sqlite+aiosqlite"
    user: str | None = None
    password: SecretStr | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = None
    url: SecretStr | None = None

    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    # The read path's own pool (db_manager.reader): small, since a read holds its connection
    # for one statement only. Counted in the connection budget logged at start.
    read_pool_size: int = Field(default=2, ge=1)
    read_max_overflow: int = Field(default=3, ge=0)
    pool_timeout: float = Field(default=10.0, gt=0)
    pool_recycle: int = Field(default=1800, ge=-1)
    pool_pre_ping: bool = True

    echo: bool = False
    hide_parameters: bool = True
    create_tables: bool = True

    connect_timeout: float = Field(default=5.0, gt=0)
    # Client-side bound (asyncpg) of every statement, the pool's pre-ping included: a frozen
    # server fails a request after command_timeout + ~2 s (closing the connection), not never.
    # 30 s: far above any statement a request should run, yet that failure still comes
    # before the 60 s of Telegram's webhook wait and of common proxy read timeouts. Migrations
    # run without it (long DDL); None turns it off.
    command_timeout: float | None = Field(default=30.0, gt=0)
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
    # Streaming replicas for the read path (db_manager.replicas): full URLs, or "host:port"
    # with the primary's user, password and database. Secrets: a URL may hold a password.
    replicas: list[SecretStr] = Field(default_factory=list)
    replica_pool_size: int = Field(default=2, ge=1)
    replica_max_overflow: int = Field(default=3, ge=0)
    # Seconds behind the primary (measured from WAL positions) beyond which a replica is skipped.
    replica_max_lag: float = Field(default=5.0, gt=0)
    replica_refresh_interval: float = Field(default=0.5, gt=0)

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
            "read_pool_size": self.read_pool_size,
            "read_max_overflow": self.read_max_overflow,
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


def read_config(
    config_file: str | os.PathLike[str] | ConfigFile | None = None,
) -> ConfigFile | None:
    """Find and parse the config file once (see :func:`resolve_config_file`); None if there is
    none. Pass the result to several :func:`load_settings` calls to read the file only once."""
    if isinstance(config_file, ConfigFile):
        return config_file
    path = resolve_config_file(config_file)
    return None if path is None else ConfigFile(path, _read_toml(path))


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
def _reading(config: ConfigFile | None) -> Iterator[None]:
    token = _active_config.set(config)
    try:
        yield
    finally:
        _active_config.reset(token)


@overload
def load_settings(
    *, config_file: str | os.PathLike[str] | ConfigFile | None = None, **overrides: Any
) -> DatabaseSettings: ...


@overload
def load_settings(
    cls: type[S],
    *,
    config_file: str | os.PathLike[str] | ConfigFile | None = None,
    **overrides: Any,
) -> S: ...


def load_settings(
    cls: type[SectionSettings] = DatabaseSettings,
    *,
    config_file: str | os.PathLike[str] | ConfigFile | None = None,
    **overrides: Any,
) -> SectionSettings:
    """Build ``cls`` from arguments, env and the config file, or raise one clear ConfigError.

    ``config_file`` is a path, or a :class:`ConfigFile` from :func:`read_config` (the file is
    then not read again: an app loading several sections parses it once). No error message
    holds the value of a field in ``cls.secret_keys``, whichever validator failed.
    """
    return _load(cls, read_config(config_file), overrides)


@overload
def load_sections(
    first: type[S],
    /,
    *,
    config_file: str | os.PathLike[str] | ConfigFile | None = ...,
    extra_sections: Iterable[str] = ...,
) -> tuple[S]: ...


@overload
def load_sections(
    first: type[S],
    second: type[S2],
    /,
    *,
    config_file: str | os.PathLike[str] | ConfigFile | None = ...,
    extra_sections: Iterable[str] = ...,
) -> tuple[S, S2]: ...


@overload
def load_sections(
    first: type[S],
    second: type[S2],
    third: type[S3],
    /,
    *,
    config_file: str | os.PathLike[str] | ConfigFile | None = ...,
    extra_sections: Iterable[str] = ...,
) -> tuple[S, S2, S3]: ...


@overload
def load_sections(
    *classes: type[SectionSettings],
    config_file: str | os.PathLike[str] | ConfigFile | None = ...,
    extra_sections: Iterable[str] = ...,
) -> tuple[SectionSettings, ...]: ...


def load_sections(
    *classes: type[SectionSettings],
    config_file: str | os.PathLike[str] | ConfigFile | None = None,
    extra_sections: Iterable[str] = (),
) -> tuple[SectionSettings, ...]:
    """Every section an app has, from one parse of the config file, in the order given.

    The file may hold only these sections and ``extra_sections`` (tables the app reads
    itself): any other top-level name is a misspelling until proven otherwise (``[databse]``
    would otherwise leave the database on its defaults), so it is a ConfigError naming the
    file, the name and the known sections, raised before any section is validated.
    """
    config = read_config(config_file)
    if config is not None:
        error = unknown_sections(config, {cls.section for cls in classes} | set(extra_sections))
        if error is not None:
            raise error
    return tuple(_load(cls, config, {}) for cls in classes)


def _load(
    cls: type[SectionSettings], config: ConfigFile | None, overrides: dict[str, Any]
) -> SectionSettings:
    path = config.path if config is not None else None
    data: Mapping[str, Any] = config.data if config is not None else {}
    section = data.get(cls.section)
    if path is not None and section is not None and not isinstance(section, dict):
        raise ConfigError(
            f"{path}: [{cls.section}] must be a table, not {type(section).__name__}",
            source=str(path),
            key=cls.section,
        )
    with _reading(config):
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise validation_error(cls, exc, path, section or {}, overrides) from None
        except SettingsError as exc:
            raise settings_error(cls, exc, path, section or {}, overrides) from None
