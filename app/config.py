"""The app's settings: ``[app]``, ``[bot]`` and ``[database]`` of one config.toml, plus env.

One :class:`Settings` object per process, built by :func:`load_app_settings` in the
composition root and passed on explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from db_manager import DatabaseSettings, SectionSettings, load_sections
from db_manager.telegram import TelegramSettings

__all__ = ["API_TOKEN_MIN_LENGTH", "AppSection", "Settings", "load_app_settings"]

API_TOKEN_MIN_LENGTH = 16


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

    @field_validator("api_token")
    @classmethod
    def api_token_must_be_a_bearer_token(cls, value: SecretStr | None) -> SecretStr | None:
        """Visible ASCII only, at least 16 characters: exactly what a client can send after
        ``Bearer `` and the check compares byte for byte (a surrounding space is stripped
        from the header, a non-ASCII character arrives in another encoding: such a token
        could never authenticate). The message never says more about the value than that."""
        if value is None or value.get_secret_value() == "":
            return None
        token = value.get_secret_value()
        hint = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        if not all("!" <= char <= "~" for char in token):
            raise ValueError(
                "may hold only visible ASCII characters (no spaces, no control or non-ASCII "
                f"characters), as sent in `Authorization: Bearer <token>`; {hint}"
            )
        if len(token) < API_TOKEN_MIN_LENGTH:
            raise ValueError(f"must be at least {API_TOKEN_MIN_LENGTH} characters long; {hint}")
        return value


@dataclass(frozen=True, slots=True)
class Settings:
    app: AppSection
    bot: TelegramSettings
    database: DatabaseSettings


def load_app_settings(config_file: str | os.PathLike[str] | None = None) -> Settings:
    """Read every section; raise one ConfigError naming file, key and reason.

    The file is found and parsed once and every section reads that parse; a top-level
    table other than ``[app]``, ``[bot]`` and ``[database]`` is an error (a misspelling).
    """
    app, bot, database = load_sections(
        AppSection, TelegramSettings, DatabaseSettings, config_file=config_file
    )
    return Settings(app=app, bot=bot, database=database)
