"""``config.toml`` is parsed once per settings load, and once for an app's several sections."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from db_manager import DatabaseSettings, load_settings, read_config
from db_manager.telegram import TelegramSettings

CONFIG = """
[database]
pool_size = 7

[bot]
webhook_path = "/hook"
"""


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = tomllib.load

    def counting(fh: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(getattr(fh, "name", "?"))
        return real(fh, **kwargs)

    monkeypatch.setattr(tomllib, "load", counting)
    return calls


def test_one_load_parses_the_file_once(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    assert load_settings(config_file=path).pool_size == 7
    assert len(parses) == 1


def test_sections_loaded_from_one_read_config_parse_the_file_once(
    tmp_path: Path, parses: list[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    config = read_config(path)
    path.unlink()  # nothing reads it again
    database = load_settings(DatabaseSettings, config_file=config)
    bot = load_settings(TelegramSettings, config_file=config)
    assert (database.pool_size, bot.webhook_path) == (7, "/hook")
    assert len(parses) == 1
