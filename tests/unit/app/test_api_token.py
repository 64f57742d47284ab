"""An ``api_token`` the app accepts is one a client can present: visible ASCII, 16 or more
characters, compared byte for byte with what follows ``Bearer `` in the header."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import AppSection, Settings
from app.main import create_app
from db_manager import ConfigError, load_settings
from db_manager.telegram import TelegramSettings
from tests.support.asgi import running
from tests.support.postgres import sqlite_settings

VISIBLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))  # every one of them
PLAIN = "x" * 16
CANDIDATES = {
    "every visible ASCII character": VISIBLE_ASCII,
    "16 characters": PLAIN,
    "15 characters": "x" * 15,
    "a leading space": " " + PLAIN,
    "a trailing space": PLAIN + " ",
    "an inner space": PLAIN[:8] + " " + PLAIN[8:],
    "a trailing tab": PLAIN + "\t",
    "a NUL": PLAIN + "\x00",
    "DEL": PLAIN + "\x7f",
    "a no-break space": PLAIN + "\u00a0",
    "latin-1 letters": "t\u00f6k\u00e9n-" + PLAIN,
    "CJK": "\u4ee4\u724c" + PLAIN,
}


def accepted_at_load(token: str) -> bool:
    try:
        load_settings(AppSection, api_token=token)
    except ConfigError as exc:
        assert "api_token" in str(exc)
        return False
    return True


def test_only_visible_ascii_tokens_of_16_or_more_characters_load() -> None:
    accepted = [name for name, token in CANDIDATES.items() if accepted_at_load(token)]

    assert accepted == ["every visible ASCII character", "16 characters"]


def test_an_empty_token_in_the_file_leaves_the_api_off(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[app]\napi_token = ""\n', encoding="utf-8")

    assert load_settings(AppSection, config_file=path).api_token is None


async def test_every_token_that_loads_authenticates_and_nothing_else_does(tmp_path: Path) -> None:
    # Whatever AppSection accepts must work when sent as-is (UTF-8 bytes, as curl sends them).
    loadable = [token for token in CANDIDATES.values() if accepted_at_load(token)]
    assert loadable  # the property below is not vacuous
    for number, token in enumerate(loadable):
        settings = Settings(
            app=load_settings(AppSection, api_token=token),
            bot=TelegramSettings(),
            database=sqlite_settings(tmp_path / f"api{number}.sqlite3"),
        )
        app = create_app(settings, configure_logs=False)
        async with running(app) as client:

            async def status(header: bytes) -> int:
                response = await client.get("/api/stats", headers=[(b"authorization", header)])
                return response.status_code

            raw = token.encode("utf-8")
            assert await status(b"Bearer " + raw) == 200
            assert await status(b"Bearer   " + raw + b"  ") == 200  # surrounding spaces: stripped
            assert await status(b"bearer " + raw) == 200  # the scheme is case-insensitive
            for wrong in (raw[:-1], raw + b"x", raw + b"\xc2\xa0", raw.swapcase(), b""):
                assert await status(b"Bearer " + wrong) == 401, wrong
            assert await status(b"Basic " + raw) == 401


@pytest.mark.parametrize("form", ["env", "file"])
def test_a_refused_token_is_one_line_without_the_token(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = " padded-secret-token-0123 "
    path = tmp_path / "config.toml"
    path.write_text(f'[app]\napi_token = "{token}"\n' if form == "file" else "", encoding="utf-8")
    if form == "env":
        monkeypatch.setenv("APP__API_TOKEN", token)

    with pytest.raises(ConfigError) as info:
        load_settings(AppSection, config_file=path)

    message = str(info.value)
    assert "\n" not in message
    assert "api_token" in message.lower()
    assert "visible ASCII" in message
    assert token.strip() not in message
