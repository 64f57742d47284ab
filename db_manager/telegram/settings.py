"""The ``[bot]`` section: token, webhook secret and URL, body limit (env ``BOT__TOKEN``, ...)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from db_manager.config import SectionSettings

__all__ = ["DEFAULT_WEBHOOK_MAX_BODY", "TelegramSettings"]

DEFAULT_WEBHOOK_MAX_BODY = 1 << 20
_SECRET_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramSettings(SectionSettings):
    """The ``[bot]`` section (env ``BOT__TOKEN``, ...). No token: the bot is off."""

    section: ClassVar[str] = "bot"
    secret_keys: ClassVar[frozenset[str]] = frozenset({"token", "webhook_secret"})

    token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    webhook_url: str | None = None
    webhook_path: str = "/webhook/telegram"
    max_body_size: int = Field(default=DEFAULT_WEBHOOK_MAX_BODY, ge=1024)
    drop_pending_updates: bool = False
    # Seconds the webhook may spend on one update before it is cancelled, rolled back and
    # answered 503: inside Telegram's 60 s wait, so Telegram hears our answer, not its timeout.
    processing_timeout: float = Field(default=50.0, gt=0, lt=60)

    @field_validator("webhook_secret")
    @classmethod
    def secret_must_match_bot_api_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET_FORMAT.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Bot API rule)")
        return value

    @field_validator("token")
    @classmethod
    def token_must_look_like_a_bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        bot_id, sep, rest = value.get_secret_value().partition(":")
        if not (bot_id.isdigit() and sep and rest):
            raise ValueError("must look like '<bot id>:<secret>' as given by @BotFather")
        return value

    @model_validator(mode="after")
    def webhook_needs_a_secret(self) -> TelegramSettings:
        if self.token is not None and self.webhook_secret is None:
            raise ValueError(
                "webhook_secret is required when token is set (the webhook would accept "
                "anyone's updates); generate one with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None
