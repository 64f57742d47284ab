"""Alembic migrations: upgrade, compare with the models, downgrade, stamp a create_all schema."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect
from sqlalchemy.engine import Connection

import app.models  # noqa: F401  (the app's tables on Base.metadata)
import db_manager.telegram.store  # noqa: F401
from db_manager import Base, Database, DatabaseSettings
from db_manager.migrations import alembic_config, render_item
from tests.support.processes import child_env

MIGRATIONS = "app:migrations"
APP_TABLES = {
    "app__users",
    "app__referral_links",
    "app__payments",
    "app__novel_states",
    "app__novel_messages",
    "db_manager__telegram_updates",
}


def _diff(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "render_item": render_item, "target_metadata": metadata},
    )
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(settings: DatabaseSettings, fn: Any, *args: Any) -> Any:
    database = Database(settings)
    await database.start()
    try:
        async with database.engine.connect() as conn:
            return await conn.run_sync(fn, *args)
    finally:
        await database.dispose()


def _alembic(settings: DatabaseSettings, action: str, revision: str) -> None:
    # Alembic's env runs its own event loop; run it off the test's loop.
    config = alembic_config(MIGRATIONS, settings)
    getattr(command, action)(config, revision)


def _migrated_tables() -> MetaData:
    """The app's and db_manager's tables: what the migrations manage. Other test modules put
    tables of their own on ``Base.metadata`` when the whole suite runs in one process."""
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        if table.name.startswith(("app__", "db_manager__")):
            table.to_metadata(metadata)
    return metadata


async def test_upgrade_matches_models_and_downgrade_removes_everything(
    db_settings: DatabaseSettings,
) -> None:
    await asyncio.to_thread(_alembic, db_settings, "upgrade", "head")
    assert await _inspect(db_settings, _tables) >= APP_TABLES
    assert await _inspect(db_settings, _diff, _migrated_tables()) == []

    await asyncio.to_thread(_alembic, db_settings, "downgrade", "base")
    assert await _inspect(db_settings, _tables) <= {"alembic_version"}

    await asyncio.to_thread(_alembic, db_settings, "upgrade", "head")
    assert await _inspect(db_settings, _tables) >= APP_TABLES


async def test_a_column_without_a_revision_is_reported(db_settings: DatabaseSettings) -> None:
    await asyncio.to_thread(_alembic, db_settings, "upgrade", "head")
    drifted = _migrated_tables()
    Table("app__users", drifted, Column("nickname_color", Integer), extend_existing=True)
    diff = await _inspect(db_settings, _diff, drifted)
    assert any(op[0] == "add_column" and op[3].name == "nickname_color" for op in diff), diff


async def test_schema_made_by_create_tables_is_stamped_then_upgrades(
    db_settings: DatabaseSettings,
) -> None:
    database = Database(db_settings)
    await database.start()
    await database.create_all()
    await database.dispose()

    await asyncio.to_thread(_alembic, db_settings, "stamp", "head")
    await asyncio.to_thread(_alembic, db_settings, "upgrade", "head")
    assert await _inspect(db_settings, _diff, Base.metadata) == []


def test_models_and_migrations_are_in_step(tmp_path: Path) -> None:
    """`python -m app db check` fails when a model changes without a revision."""
    env = child_env(DATABASE__DATABASE=str(tmp_path / "check.sqlite3"))
    upgrade = subprocess.run(
        [sys.executable, "-m", "app", "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    check = subprocess.run(
        [sys.executable, "-m", "app", "db", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("action", ["upgrade"])
def test_offline_sql_renders(tmp_path: Path, action: str) -> None:
    env = child_env(DATABASE__DATABASE=str(tmp_path / "offline.sqlite3"))
    result = subprocess.run(
        [sys.executable, "-m", "app", "db", action, "head", "--sql"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE app__users" in result.stdout
