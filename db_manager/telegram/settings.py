"""The ``[bot]`` section: token, webhook secret and URL, body limit (env ``BOT__TOKEN``, ...)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

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
    # The Bot API server (aiogram's TelegramAPIServer.from_base): None is Telegram's own;
    # a self-hosted telegram-bot-api, e.g. "http://127.0.0.1:8081", with api_is_local = true
    # when it runs with --local.
    api_server: str | None = None
    api_is_local: bool = False

    # How the webhook processes updates: "foreground" handles the update inside Telegram's
    # request; "inbox" stores it (db_manager__telegram_inbox), commits, answers 200, and
    # workers apply it exactly once, in per-chat order (see db_manager.telegram.inbox).
    processing: Literal["foreground", "inbox"] = "foreground"
    # Inbox workers in every app process; 0: this process only acknowledges (run
    # `python -m app worker` elsewhere).
    workers: int = Field(default=4, ge=0, le=256)
    # A permanent failure (a handler bug) is retried this many times in all, then dead.
    max_attempts: int = Field(default=5, ge=1, le=1000)
    # Retry backoff: retry_base * 2**attempt seconds with full jitter, at most retry_max.
    retry_base: float = Field(default=1.0, gt=0)
    retry_max: float = Field(default=300.0, gt=0)
    # Fallback poll of the inbox and outbox when no notification arrives (PostgreSQL wakes
    # workers with LISTEN/NOTIFY; SQLite relies on in-process wake-ups and this poll).
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    # On shutdown: seconds in-flight updates (and sends) may take before they are cancelled
    # and rolled back to pending.
    drain_timeout: float = Field(default=20.0, ge=0, le=600)

    # The outbox sender (db_manager.telegram.outbox): run in every app process by default.
    outbox_sender: bool = True
    # Telegram's flood limits, per sender process: messages/s per private chat, per group
    # (20 per minute) and per bot.
    private_chat_rate: float = Field(default=1.0, gt=0)
    group_chat_rate: float = Field(default=20 / 60, gt=0)
    bot_rate: float = Field(default=30.0, gt=0)

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

    @field_validator("api_server")
    @classmethod
    def api_server_must_be_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")) or "{" in value:
            raise ValueError("must be the server's base URL, e.g. 'http://127.0.0.1:8081'")
        return value.rstrip("/")

    @property
    def enabled(self) -> bool:
        return self.token is not None

    @property
    def bot_id(self) -> int | None:
        """The bot's id (the token's part before ``:``), known without a network call."""
        return None if self.token is None else int(self.token.get_secret_value().split(":")[0])
