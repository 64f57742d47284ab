"""``python -m app``: run the server, register the webhook, manage the schema.

python -m app run [--host H] [--port P] [--workers N]
python -m app set-webhook
python -m app prune-updates [--days N]
python -m app prune-idempotency-keys
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.config import Settings, load_app_settings
from db_manager import ConfigError, Database, DatabaseManagerError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $CONFIG_FILE or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve HTTP and the bot webhook with uvicorn")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    run.add_argument("--workers", type=int, default=1)
    commands.add_parser("set-webhook", help="register the webhook with Telegram (once per deploy)")
    prune = commands.add_parser("prune-updates", help="delete old processed-update records")
    prune.add_argument("--days", type=float, default=3.0)
    commands.add_parser("prune-idempotency-keys", help="delete expired idempotency keys of the API")
    db = commands.add_parser("db", help="schema migrations (Alembic)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="upgrade to a revision (default head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.add_argument("--sql", action="store_true", help="print SQL instead of running it")
    downgrade = db_commands.add_parser("downgrade", help="downgrade to a revision (e.g. base)")
    downgrade.add_argument("revision")
    downgrade.add_argument("--sql", action="store_true", help="print SQL instead of running it")
    revision = db_commands.add_parser("revision", help="create a revision file")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", action="store_true")
    stamp = db_commands.add_parser("stamp", help="mark the database as at a revision")
    stamp.add_argument("revision", nargs="?", default="head")
    db_commands.add_parser("current", help="show the database's revision")
    db_commands.add_parser("check", help="fail if the models differ from the migrations")
    args = parser.parse_args(argv)

    try:
        if args.config:
            import os

            os.environ["CONFIG_FILE"] = args.config
        settings = load_app_settings()
        if args.command == "run":
            return _run(settings, args.host, args.port, args.workers)
        if args.command == "set-webhook":
            return asyncio.run(_set_webhook(settings))
        if args.command == "prune-updates":
            return asyncio.run(_prune(settings, args.days))
        if args.command == "prune-idempotency-keys":
            return asyncio.run(_prune_idempotency_keys(settings))
        if args.command == "db":
            return _db(settings, args)
    except DatabaseManagerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0


def _run(settings: Settings, host: str | None, port: int | None, workers: int) -> int:
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.app.host,
        port=port or settings.app.port,
        workers=workers,
        log_config=None,
        lifespan="on",
    )
    return 0


async def _set_webhook(settings: Settings) -> int:
    from app.bot import build_dispatcher
    from app.story import load_story
    from db_manager.telegram import build_bot, register_webhook

    if settings.bot.token is None:
        raise ConfigError("[bot] token is not set; nothing to register")
    bot = build_bot(settings.bot)
    try:
        await register_webhook(bot, build_dispatcher(load_story()), settings.bot)
    finally:
        await bot.session.close()
    print(f"webhook set to {settings.bot.webhook_url}")
    return 0


async def _prune(settings: Settings, days: float) -> int:
    import datetime as dt

    from app.unit_of_work import AppUnitOfWork
    from db_manager.telegram import prune_updates

    database = Database(settings.database, uow_class=AppUnitOfWork)
    await database.start()
    try:
        async with database.uow_factory() as uow:
            deleted = await prune_updates(uow, older_than=dt.timedelta(days=days))
    finally:
        await database.dispose()
    print(f"deleted {deleted} update records")
    return 0


async def _prune_idempotency_keys(settings: Settings) -> int:
    from db_manager.idempotency import prune_idempotency_keys

    database = Database(settings.database)
    await database.start()
    try:
        async with database.uow_factory() as uow:
            deleted = await prune_idempotency_keys(uow.session)
    finally:
        await database.dispose()
    print(f"deleted {deleted} expired idempotency keys")
    return 0


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from alembic import command
    from alembic.util.exc import CommandError

    from db_manager.migrations import alembic_config

    config = alembic_config(MIGRATIONS, settings.database)
    try:
        if args.db_command == "upgrade":
            command.upgrade(config, args.revision, sql=args.sql)
        elif args.db_command == "downgrade":
            command.downgrade(config, args.revision, sql=args.sql)
        elif args.db_command == "revision":
            command.revision(config, message=args.message, autogenerate=args.autogenerate)
        elif args.db_command == "stamp":
            command.stamp(config, args.revision)
        elif args.db_command == "current":
            command.current(config, verbose=True)
        elif args.db_command == "check":
            command.check(config)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


MIGRATIONS = "app:migrations"


if __name__ == "__main__":
    sys.exit(main())
