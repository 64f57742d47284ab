"""What the webhook refuses: a wrong secret (401, nothing touched), an oversized body (413),
a body that is not an Update (400), and a bad secret in the configuration (fails at start).
Acceptance points 1 and 2 of issue 4, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from db_manager import ConfigError, load_settings
from db_manager.telegram import DEFAULT_WEBHOOK_MAX_BODY, TelegramSettings
from tests.support.updates import WEBHOOK_SECRET, encode, start_update

from .aiogram_webhook_app import Harness, HarnessFactory, telegram_settings


def assert_quiet(logs: list[MutableMapping[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    """Nothing worse than a warning was logged, and no traceback anywhere."""
    for entry in logs:
        assert entry["log_level"] in ("debug", "info"), entry
        assert not entry.get("exc_info"), entry
    assert "Traceback" not in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def assert_untouched(harness: Harness) -> None:
    assert harness.calls == []
    assert harness.checkout_count == 0
    assert harness.session.requests == []
    assert await harness.events() == []
    assert await harness.recorded_updates() == []


# -- 1. the secret header ----------------------------------------------------------------------

near_miss = WEBHOOK_SECRET[:-1] + ("2" if WEBHOOK_SECRET[-1] != "2" else "3")

BAD_SECRETS: list[tuple[str, str | bytes | None]] = [
    ("missing", None),
    ("empty", ""),
    ("wrong", "wrong"),
    ("equal-length-near-miss", near_miss),
    ("other-case", WEBHOOK_SECRET.upper()),
    ("prefix", WEBHOOK_SECRET[:-1]),
    ("longer", WEBHOOK_SECRET + "1"),
    ("non-ascii-latin1-equal-length", WEBHOOK_SECRET[:-1].encode() + b"\xe9"),
    ("non-ascii-utf8", "s3cret_tökén-1".encode()),
    ("non-ascii-ff", b"\xff" * len(WEBHOOK_SECRET)),
]


@pytest.fixture
async def quiet_harness(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Harness]:
    caplog.set_level(logging.DEBUG)
    async with make_harness() as harness:
        caplog.clear()
        yield harness


async def test_a_bad_secret_is_refused_before_anything_happens(
    quiet_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = quiet_harness
    for case, secret in BAD_SECRETS:
        with capture_logs() as logs:
            response = await harness.post(start_update(update_id=2001), secret=secret)

        assert response.status_code == 401, case
        assert response.json() == {"detail": "Unauthorized."}, case
        await assert_untouched(harness)
        assert_quiet(logs, caplog)


async def test_a_bad_secret_is_refused_even_with_a_body_that_is_not_json(
    quiet_harness: Harness,
) -> None:
    response = await quiet_harness.post(b"{", secret="wrong")
    assert response.status_code == 401
    await assert_untouched(quiet_harness)


async def test_the_right_secret_passes(quiet_harness: Harness) -> None:
    """The control for the tests above: the same update with the right secret is applied."""
    response = await quiet_harness.post(start_update(update_id=2002))
    assert response.status_code == 200
    assert len(await quiet_harness.events("start")) == 1


# -- 2. the body --------------------------------------------------------------------------------


BAD_BODIES: list[tuple[str, bytes]] = [
    ("truncated-json", b"{"),
    ("array", b"[]"),
    ("update_id-not-a-number", b'{"update_id": "x"}'),
    ("empty", b""),
    ("null", b"null"),
    ("not-utf8", b"\xff\xfe{}"),
    ("no-update_id", b'{"message": {}}'),
    ("message-not-a-message", b'{"update_id": 5, "message": {"text": 7}}'),
]


async def test_a_body_that_is_not_an_update_gets_400(
    quiet_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    for case, body in BAD_BODIES:
        with capture_logs() as logs:
            response = await quiet_harness.post(body)

        assert response.status_code == 400, case
        assert response.json() == {"detail": "The body is not a Telegram Update."}, case
        await assert_untouched(quiet_harness)
        assert_quiet(logs, caplog)


async def test_an_update_of_an_unknown_type_is_acknowledged(
    quiet_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A type newer than our aiogram: nothing to do, and no reason for Telegram to retry."""
    with capture_logs() as logs:
        response = await quiet_harness.post(b'{"update_id": 2003, "future_update": {"x": 1}}')

    assert (response.status_code, response.content) == (200, b"")
    await assert_untouched(quiet_harness)
    assert_quiet(logs, caplog)


async def test_an_oversized_body_gets_413(
    quiet_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"update_id": 1, "pad": "' + b"x" * DEFAULT_WEBHOOK_MAX_BODY + b'"}'
    with capture_logs() as logs:
        response = await quiet_harness.post(body)

    assert response.status_code == 413
    await assert_untouched(quiet_harness)
    assert_quiet(logs, caplog)


async def test_an_oversized_streamed_body_without_content_length_gets_413(
    quiet_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    chunk = b" " * 65536
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"update_id": 1, "pad": "'
        for _ in range(DEFAULT_WEBHOOK_MAX_BODY // len(chunk) + 2):
            sent += 1
            yield chunk
        yield b'"}'

    with capture_logs() as logs:
        response = await quiet_harness.client.post(
            "/webhook/telegram",
            content=stream(),
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        )

    assert response.status_code == 413
    await assert_untouched(quiet_harness)
    assert_quiet(logs, caplog)


async def test_a_body_just_under_the_limit_is_read(quiet_harness: Harness) -> None:
    update = start_update(update_id=2004)
    update["padding"] = ""
    update["padding"] = "x" * (DEFAULT_WEBHOOK_MAX_BODY - len(encode(update)))
    assert len(encode(update)) == DEFAULT_WEBHOOK_MAX_BODY
    response = await quiet_harness.post(update)
    assert response.status_code == 200
    assert len(await quiet_harness.events("start")) == 1


# -- a bad secret in the configuration fails at start -------------------------------------------

BAD_CONFIGURED_SECRETS = [
    ("space", "with space"),
    ("257-chars", "x" * 257),
    ("empty", ""),
    ("non-ascii", "sécret"),
    ("punctuation", "semi;colon"),
    ("newline", "new\nline"),
]


@pytest.mark.parametrize(
    "secret", [pytest.param(value, id=name) for name, value in BAD_CONFIGURED_SECRETS]
)
def test_a_bad_configured_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="webhook_secret"):
        telegram_settings(webhook_secret=secret)
    with pytest.raises(ConfigError) as raised:
        load_settings(TelegramSettings, token="123456:TEST", webhook_secret=secret)
    assert raised.value.key == "webhook_secret"
    message = str(raised.value)
    assert "1-256 characters" in message
    if len(secret) > 3:
        assert secret not in message  # secrets never appear in errors


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BOT__TOKEN", "123456:TEST")
    monkeypatch.setenv("BOT__WEBHOOK_SECRET", "bad secret")
    yield


def test_a_bad_secret_from_the_environment_names_the_variable(env_secret: None) -> None:
    with pytest.raises(ConfigError, match="BOT__WEBHOOK_SECRET"):
        load_settings(TelegramSettings)


def test_a_bad_secret_from_the_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[bot]\ntoken = "123456:TEST"\nwebhook_secret = "x y"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(TelegramSettings, config_file=config)
    assert str(config) in str(raised.value)
    assert "webhook_secret" in str(raised.value)


def test_the_longest_and_shortest_valid_secrets_are_accepted() -> None:
    assert telegram_settings(webhook_secret="A" * 256).webhook_secret is not None
    assert telegram_settings(webhook_secret="_").webhook_secret is not None


def test_a_token_without_a_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="webhook_secret is required"):
        load_settings(TelegramSettings, token="123456:TEST")


def test_the_secret_is_not_in_the_settings_repr() -> None:
    settings = telegram_settings()
    assert WEBHOOK_SECRET not in repr(settings)
    assert "TEST" not in repr(settings)
