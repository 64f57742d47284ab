"""``load_app_settings`` reads every section of one config file from a single parse."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.config import load_app_settings

CONFIG = """
[app]
port = 8123

[bot]
webhook_path = "/hook"

[database]
pool_size = 7
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


@pytest.mark.parametrize("named_by", ["argument", "env"])
def test_the_three_sections_come_from_one_parse(
    tmp_path: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    if named_by == "env":
        monkeypatch.setenv("CONFIG_FILE", str(path))
        settings = load_app_settings()
    else:
        settings = load_app_settings(path)
    assert (settings.app.port, settings.bot.webhook_path, settings.database.pool_size) == (
        8123,
        "/hook",
        7,
    )
    assert parses == [str(path)]
