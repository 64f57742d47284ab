"""``python -m app``: run the server, register the webhook, manage the schema.

    python -m app run [--host H] [--port P] [--workers N]
    python -m app set-webhook
    python -m app prune-updates [--days N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from db_manager import ConfigError, Database, DatabaseManagerError, prune_updates

from app.config import load_app_settings

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
    except DatabaseManagerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0


def _run(settings, host: str | None, port: int | None, workers: int) -> int:  # type: ignore[no-untyped-def]
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


async def _set_webhook(settings) -> int:  # type: ignore[no-untyped-def]
    from aiogram import Bot

    from app.bot import build_dispatcher
    from db_manager.aiogram import register_webhook

    if settings.bot.token is None:
        raise ConfigError("[bot] token is not set; nothing to register")
    bot = Bot(settings.bot.token.get_secret_value())
    try:
        await register_webhook(bot, build_dispatcher(), settings.bot)
    finally:
        await bot.session.close()
    print(f"webhook set to {settings.bot.webhook_url}")
    return 0


async def _prune(settings, days: float) -> int:  # type: ignore[no-untyped-def]
    import datetime as dt

    from app.unit_of_work import AppUnitOfWork

    database = Database(settings.database, uow_class=AppUnitOfWork)
    await database.start()
    try:
        async with database.uow_factory() as uow:
            deleted = await prune_updates(uow, older_than=dt.timedelta(days=days))
    finally:
        await database.dispose()
    print(f"deleted {deleted} update records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
