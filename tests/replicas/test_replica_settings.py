"""Replica settings without a server: entries, secrets, and nothing built without replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from db_manager import Database, DatabaseSettings
from db_manager.engine import ConnectionBudget
from db_manager.errors import ConfigError
from db_manager.replicas import format_position, parse_position, replica_urls

PRIMARY: dict[str, Any] = {
    "driver": "postgresql+asyncpg",
    "host": "db",
    "user": "app",
    "password": SecretStr("pw-primary"),
    "database": "shop",
}


def test_host_port_entries_take_the_primarys_credentials_and_urls_their_own() -> None:
    settings = DatabaseSettings(
        **PRIMARY,
        replicas=[
            SecretStr("replica-1:6432"),
            SecretStr("replica-2"),
            SecretStr("postgresql+asyncpg://ro:p%40ss@replica-3:5433/shop"),
        ],
    )
    urls = replica_urls(settings)
    assert [(u.host, u.port, u.username, u.database) for u in urls] == [
        ("replica-1", 6432, "app", "shop"),
        ("replica-2", 5432, "app", "shop"),
        ("replica-3", 5433, "ro", "shop"),
    ]
    assert urls[0].password == "pw-primary" and urls[2].password == "p@ss"


def test_replica_passwords_stay_out_of_reprs_and_errors() -> None:
    secret = "postgresql+asyncpg://ro:topsecret@replica/shop"
    settings = DatabaseSettings(**PRIMARY, replicas=[SecretStr(secret)])
    assert "topsecret" not in repr(settings) and "topsecret" not in str(settings.describe())
    bad = DatabaseSettings(**PRIMARY, replicas=[SecretStr("mysql://ro:topsecret@replica/shop")])
    with pytest.raises(ConfigError) as caught:
        replica_urls(bad)
    assert "topsecret" not in str(caught.value)
    assert "replicas[0]" in str(caught.value)


@pytest.mark.parametrize("entry", ["replica:notaport", "replica:70000", ":5432"])
def test_a_malformed_entry_is_one_config_line(entry: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^\[database\] replicas\[0\]: expected a URL or host:port"
    ):
        replica_urls(DatabaseSettings(**PRIMARY, replicas=[SecretStr(entry)]))


def test_replicas_need_postgresql() -> None:
    settings = DatabaseSettings(database="x.sqlite3", replicas=[SecretStr("replica:5432")])
    with pytest.raises(ConfigError, match="need postgresql"):
        replica_urls(settings)


def test_positions_round_trip_through_their_text_form() -> None:
    assert format_position(0x16_B374D848) == "16/B374D848"
    assert parse_position("16/B374D848") == 0x16_B374D848
    for bad in ("", "16", "16/", "G/1", "1/2/3", "123456789/0"):
        with pytest.raises(ValueError, match="not a commit position"):
            parse_position(bad)


async def test_without_replicas_nothing_is_built_or_run(tmp_path: Path) -> None:
    settings = DatabaseSettings(database=str(tmp_path / "db.sqlite3"))
    assert ConnectionBudget.of(settings).replicas == 0
    database = Database(settings)
    await database.start()
    try:
        assert database.replicas is None
        assert database.reader.replicas is None
        assert database.reader.at(12345) is database.reader
    finally:
        await database.dispose()
