"""The app's settings: ``[app]``, ``[bot]`` and ``[database]`` of one config.toml, plus env.

One :class:`Settings` object per process, built by :func:`load_app_settings` in the
composition root and passed on explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from db_manager import DatabaseSettings, SectionSettings, load_settings, read_config
from db_manager.telegram import TelegramSettings

__all__ = ["AppSection", "Settings", "load_app_settings"]


class AppSection(SectionSettings):
    """The ``[app]`` section (env ``APP__API_TOKEN``, ...)."""

    section: ClassVar[str] = "app"
    secret_keys: ClassVar[frozenset[str]] = frozenset({"api_token"})

    api_token: SecretStr | None = None
    max_body_size: int = Field(default=1 << 20, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    # /docs, /redoc and /openapi.json; turn them off where the API is not public.
    docs: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)


@dataclass(frozen=True, slots=True)
class Settings:
    app: AppSection
    bot: TelegramSettings
    database: DatabaseSettings


def load_app_settings(config_file: str | os.PathLike[str] | None = None) -> Settings:
    """Read every section; raise one ConfigError naming file, key and reason.

    The file is found and parsed once (``read_config``) and every section reads that parse.
    """
    config = read_config(config_file)
    return Settings(
        app=load_settings(AppSection, config_file=config),
        bot=load_settings(TelegramSettings, config_file=config),
        database=load_settings(DatabaseSettings, config_file=config),
    )
