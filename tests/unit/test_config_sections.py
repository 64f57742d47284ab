"""A config file holds only the sections its app reads: a misspelled ``[databse]`` is an error
naming the file, the section and the known ones, not a silent start on the defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.config import AppSection, load_app_settings
from db_manager import ConfigError, DatabaseSettings, load_sections, load_settings
from db_manager.telegram import TelegramSettings

MISSPELLED = """
[app]
port = 8123

[databse]
driver = "postgresql+asyncpg"
host = "db.example"
"""


def write(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_a_misspelled_section_stops_the_app_with_one_line(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", MISSPELLED)  # ./config.toml: tests run in tmp_path

    with pytest.raises(ConfigError) as info:
        load_app_settings()

    assert str(info.value) == (
        "config.toml: unknown section [databse]; known sections: [app], [bot], [database]"
    )
    assert (info.value.source, info.value.key) == ("config.toml", "databse")


def test_the_file_is_named_as_config_file_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "deploy").mkdir()
    path = write(tmp_path / "deploy" / "prod.toml", MISSPELLED)
    monkeypatch.setenv("CONFIG_FILE", str(path))

    with pytest.raises(ConfigError) as info:
        load_app_settings()

    assert str(info.value).startswith(f"{path}: unknown section [databse]; ")


def test_the_unknown_section_is_reported_before_the_errors_of_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", MISSPELLED.replace("port = 8123", "port = 0"))

    with pytest.raises(ConfigError) as info:
        load_app_settings(path)

    assert "unknown section [databse]" in str(info.value)
    assert "port" not in str(info.value)


def test_every_unknown_name_is_listed_tables_and_top_level_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        'debug = true\n[databse]\nhost = "h"\n[bots]\ntoken = "1:a"\n[database]\npool_size = 3\n',
    )

    with pytest.raises(ConfigError) as info:
        load_sections(DatabaseSettings, TelegramSettings, config_file=path)

    assert str(info.value) == (
        f"{path}: unknown sections [databse], [bots]; unknown top-level key debug; "
        "known sections: [bot], [database]"
    )


def test_sections_an_app_reads_itself_are_declared_as_extra(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", '[story]\nfile = "s.toml"\n[database]\npool_size = 3\n')

    (database,) = load_sections(DatabaseSettings, config_file=path, extra_sections=["story"])
    assert database.pool_size == 3

    with pytest.raises(ConfigError) as info:
        load_sections(DatabaseSettings, config_file=path)
    assert str(info.value) == f"{path}: unknown section [story]; known sections: [database]"


def test_known_sections_load_in_the_order_given_from_one_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses: list[Any] = []
    real = tomllib.load

    def counting(fh: Any, **kwargs: Any) -> dict[str, Any]:
        parses.append(fh)
        return real(fh, **kwargs)

    monkeypatch.setattr(tomllib, "load", counting)
    path = write(
        tmp_path / "config.toml", '[app]\nport = 8123\n[bot]\nwebhook_path = "/h"\n[database]\n'
    )

    app, bot, database = load_sections(
        AppSection, TelegramSettings, DatabaseSettings, config_file=path
    )

    assert (app.port, bot.webhook_path, database.driver) == (8123, "/h", "sqlite+aiosqlite")
    assert len(parses) == 1


def test_without_a_config_file_every_section_has_its_defaults() -> None:
    settings = load_app_settings()

    assert (settings.app.port, settings.bot.enabled, settings.database.driver) == (
        8000,
        False,
        "sqlite+aiosqlite",
    )


def test_a_known_section_that_is_not_a_table_is_still_named(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'database = "app.sqlite3"\n')

    with pytest.raises(ConfigError) as info:
        load_app_settings(path)

    assert str(info.value) == f"{path}: [database] must be a table, not str"


def test_one_section_loaded_alone_does_not_judge_the_others(tmp_path: Path) -> None:
    # load_settings cannot know which sections the app has; load_sections does.
    path = write(tmp_path / "config.toml", "[databse]\n[database]\npool_size = 4\n")

    assert load_settings(config_file=path).pool_size == 4
