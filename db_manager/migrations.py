"""Alembic support: what an ``env.py`` needs, so an app's env.py is three lines::

    # migrations/env.py
    import app.models  # noqa: F401  (registers the models on db_manager.Base.metadata)
    from db_manager.migrations import run_env

    run_env()

Migrations run online through the async engine built from the same
:class:`~db_manager.config.DatabaseSettings` as the app (config.toml / env), with
``target_metadata = Base.metadata`` (and its naming convention), ``compare_type`` on, and
batch mode on SQLite (whose ALTER TABLE cannot change columns). Offline mode (``--sql``)
renders SQL for the same URL.

:func:`alembic_config` builds the :class:`alembic.config.Config` for the command API, so a
CLI is a thin wrapper over ``alembic.command``.
"""

from __future__ import annotations

from db_manager._extras import require

require("db_manager.migrations", "migrations", "alembic")

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from db_manager.base import Base
from db_manager.config import DatabaseSettings, load_settings
from db_manager.engine import create_engine

__all__ = ["SETTINGS_ATTRIBUTE", "alembic_config", "render_item", "run_env"]

# Key of Config.attributes under which a caller passes ready-made DatabaseSettings.
SETTINGS_ATTRIBUTE = "db_manager_settings"
# Key under which a caller passes an open synchronous Connection to migrate on.
CONNECTION_ATTRIBUTE = "connection"


def alembic_config(
    script_location: str,
    settings: DatabaseSettings | None = None,
    *,
    ini_file: str | None = None,
) -> Config:
    """An Alembic Config for ``script_location`` (``"package:folder"`` works)."""
    config = Config(ini_file) if ini_file else Config()
    config.set_main_option("script_location", script_location)
    if settings is not None:
        config.attributes[SETTINGS_ATTRIBUTE] = settings
    return config


def _settings(config: Config) -> DatabaseSettings:
    given = config.attributes.get(SETTINGS_ATTRIBUTE)
    if isinstance(given, DatabaseSettings):
        return given
    return load_settings()


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render a TypeDecorator column type as its underlying type (``sa.DateTime(...)``), so
    revisions do not import application modules that may later move."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        return f"sa.{impl!r}"
    return False


def _configure(connection: Connection | None, metadata: MetaData, **options: Any) -> None:
    sqlite = connection is not None and connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=False,
        render_as_batch=sqlite or options.pop("render_as_batch", False),
        render_item=render_item,
        **options,
    )


def _run_sync(connection: Connection, metadata: MetaData) -> None:
    _configure(connection, metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(settings: DatabaseSettings, metadata: MetaData) -> None:
    # NullPool: a migration run owns its one connection and leaves nothing pooled behind.
    # No command_timeout: a migration's DDL (an index on a big table) may rightly run long.
    unbounded = settings.model_copy(update={"command_timeout": None})
    engine = create_engine(unbounded, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync, metadata)
            await connection.commit()
    finally:
        await engine.dispose()


def run_env(metadata: MetaData | None = None) -> None:
    """Run the migrations Alembic asked for; call this from ``env.py``."""
    target = metadata if metadata is not None else Base.metadata
    config = context.config
    connection = config.attributes.get(CONNECTION_ATTRIBUTE)
    if isinstance(connection, Connection):
        _run_sync(connection, target)
        return
    settings = _settings(config)
    if context.is_offline_mode():
        url = settings.sqlalchemy_url
        context.configure(
            url=url.render_as_string(hide_password=False),
            target_metadata=target,
            literal_binds=True,
            compare_type=True,
            render_as_batch=url.get_backend_name() == "sqlite",
            render_item=render_item,
            dialect_opts={"paramstyle": "named"},
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(settings, target))
