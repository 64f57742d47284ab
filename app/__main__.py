"""``python -m app``: run the server, register the webhook, manage the schema.

python -m app run [--host H] [--port P] [--workers N]
python -m app worker [--workers N]
python -m app set-webhook
python -m app broadcast --text TEXT
python -m app prune-updates [--days N]
python -m app prune-idempotency-keys
python -m app inbox status
python -m app inbox retry UPDATE_ID [UPDATE_ID ...] | --dead
python -m app inbox purge --done-older-than DAYS
python -m app db upgrade|downgrade|revision|stamp|current|check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from app.config import Settings, load_app_settings
from db_manager import ConfigError, Database, DatabaseManagerError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $CONFIG_FILE or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve HTTP and the bot webhook with uvicorn")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    run.add_argument("--workers", type=int, default=1)
    worker = commands.add_parser(
        "worker", help='apply inbox updates only ([bot] processing = "inbox"); stop on SIGTERM'
    )
    worker.add_argument("--workers", type=int, default=None, help="default: [bot] workers")
    commands.add_parser("set-webhook", help="register the webhook with Telegram (once per deploy)")
    broadcast = commands.add_parser(
        "broadcast",
        help="enqueue a message to every reachable user (the app's outbox senders deliver it)",
    )
    broadcast.add_argument("--text", required=True, help="1 to 4096 characters")
    prune = commands.add_parser("prune-updates", help="delete old processed-update records")
    prune.add_argument("--days", type=float, default=3.0)
    commands.add_parser("prune-idempotency-keys", help="delete expired idempotency keys of the API")
    inbox = commands.add_parser("inbox", help="the webhook inbox: status, retries, purge")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", required=True)
    inbox_commands.add_parser("status", help="counts, oldest pending age, dead updates (JSON)")
    retry = inbox_commands.add_parser("retry", help="make dead or retrying updates due again")
    retry_which = retry.add_mutually_exclusive_group(required=True)
    retry_which.add_argument("update_ids", nargs="*", type=int, default=[], metavar="UPDATE_ID")
    retry_which.add_argument("--dead", action="store_true", help="every dead update")
    purge = inbox_commands.add_parser("purge", help="delete done updates")
    purge.add_argument("--done-older-than", type=float, required=True, metavar="DAYS")
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
        if args.command == "worker":
            return asyncio.run(_worker(settings, args.workers))
        if args.command == "inbox":
            return asyncio.run(_inbox(settings, args))
        if args.command == "set-webhook":
            return asyncio.run(_set_webhook(settings))
        if args.command == "broadcast":
            return asyncio.run(_broadcast(settings, args.text))
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


async def _broadcast(settings: Settings, text: str) -> int:
    from app.bot.outbox import BotOutbox, Outbox
    from app.services import InvalidInput, broadcast, check_broadcast_text
    from app.unit_of_work import AppUnitOfWork

    bot_id = settings.bot.bot_id
    if bot_id is None:
        raise ConfigError("[bot] token is not set; there is no bot to broadcast from")
    try:
        check_broadcast_text(text)
    except InvalidInput as exc:
        print(f"error: --text: {exc}", file=sys.stderr)
        return 2
    database = Database(settings.database, uow_class=AppUnitOfWork)
    await database.start()
    try:
        # One transaction: every message is enqueued, or (an error) none is.
        async with database.uow_factory() as uow:
            count = await broadcast(uow, BotOutbox(Outbox(uow, bot_id)), text)
    finally:
        await database.dispose()
    print(f"enqueued {count} messages; the app's outbox senders deliver them")
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


async def _worker(settings: Settings, workers: int | None) -> int:
    from app.bot import build_dispatcher
    from app.bot.outbox import Outbox
    from app.bot.reachability import forbidden_hook
    from app.logs import configure_logging
    from app.story import load_story
    from app.unit_of_work import AppUnitOfWork
    from db_manager.telegram.worker import run_worker

    if settings.bot.processing != "inbox":
        raise ConfigError(
            f'[bot] processing is "{settings.bot.processing}"; the worker applies inbox '
            'updates only: set [bot] processing = "inbox" (env BOT__PROCESSING=inbox)'
        )
    if settings.bot.token is None:
        raise ConfigError("[bot] token is not set; the worker has no bot to serve")
    if workers is not None and workers < 1:
        raise ConfigError("--workers must be at least 1")
    configure_logging(settings.app.log_level, settings.app.log_format)
    dispatcher = build_dispatcher(load_story())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    database = Database(settings.database, uow_class=AppUnitOfWork)
    await database.start()
    try:
        if settings.database.create_tables:
            await database.create_all()
        await _require_inbox_table(database)
        # The same outbox and 403 hook as create_app: handlers here enqueue their sends too.
        await run_worker(
            settings.bot,
            dispatcher,
            database,
            stop=stop,
            workers=workers,
            outbox=Outbox,
            on_forbidden=forbidden_hook(lambda: database.uow_factory),
        )
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await database.dispose()
    return 0


async def _require_inbox_table(database: Database[Any]) -> None:
    """Fail at start, in one line, when the schema has no inbox (not migrated)."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from db_manager.errors import SchemaError
    from db_manager.telegram.inbox import TelegramInboxItem

    try:
        async with database.uow_factory() as uow:
            await uow.session.execute(select(TelegramInboxItem.update_id).limit(0))
    except DBAPIError as exc:
        raise SchemaError(
            f"table {TelegramInboxItem.__tablename__} is missing; run `python -m app db upgrade`"
        ) from exc


async def _inbox(settings: Settings, args: argparse.Namespace) -> int:
    import datetime as dt

    from app.logs import configure_logging
    from db_manager.telegram.inbox import inbox_status, purge_done, retry_updates

    # Logs go to stderr: stdout carries the answer alone (JSON for `status`).
    configure_logging(settings.app.log_level, settings.app.log_format)
    bot_id = settings.bot.bot_id  # None (no token): every bot's updates
    database = Database(settings.database)
    await database.start()
    try:
        await _require_inbox_table(database)
        async with database.uow_factory() as uow:
            if args.inbox_command == "status":
                status = await inbox_status(uow.session, bot_id=bot_id)
                dead = await _dead_updates(uow.session, bot_id, limit=DEAD_SHOWN)
                print(json.dumps({**status.as_dict(), "dead_updates": dead}, indent=2))
                return 0
            if args.inbox_command == "retry":
                if args.dead:
                    count = await retry_updates(uow.session, dead=True, bot_id=bot_id)
                    print(f"{count} dead updates are due again")
                    return 0
                asked = sorted(set(args.update_ids))
                count = await retry_updates(uow.session, update_ids=asked, bot_id=bot_id)
                print(f"{count} of {len(asked)} updates are due again")
                if count < len(asked):
                    print("error: the others are done or unknown", file=sys.stderr)
                    return 1
                return 0
            days = args.done_older_than
            deleted = await purge_done(uow.session, older_than=dt.timedelta(days=days))
            print(f"deleted {deleted} done updates finished more than {days:g} days ago")
            return 0
    finally:
        await database.dispose()


async def _dead_updates(session: AsyncSession, bot_id: int | None, *, limit: int) -> list[Any]:
    from sqlalchemy import select

    from db_manager.telegram.inbox import TelegramInboxItem as Item

    query = select(Item.update_id, Item.attempts, Item.finished_at, Item.last_error)
    query = query.where(Item.status == "dead").order_by(Item.update_id).limit(limit)
    if bot_id is not None:
        query = query.where(Item.bot_id == bot_id)
    return [
        {
            "update_id": row.update_id,
            "attempts": row.attempts,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "last_error": row.last_error,
        }
        for row in await session.execute(query)
    ]


DEAD_SHOWN = 20  # dead updates listed by `inbox status`


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
