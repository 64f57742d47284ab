"""A process that runs only an outbox sender, for the crash test (``test_outbox_crash.py``).

::

    python -m tests.integration.outbox_child --database NAME --api-server URL [--private-rate R]

Run as a module from the repository root (``tests.support.processes.child_env``): run as a
script, its directory would come first on ``sys.path`` and ``tests/integration/aiogram``
would shadow aiogram. It prints ``ready`` once the sender runs (log lines may come first),
then sends until SIGTERM (a graceful stop) or SIGKILL (the crash under test).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from db_manager import Database
from db_manager.notify import Notifications
from db_manager.telegram import build_bot
from db_manager.telegram.sender import OutboxSender
from tests.integration.outbox_helpers import bot_settings
from tests.support.postgres import pg_settings


async def main(args: argparse.Namespace) -> None:
    database = Database(pg_settings(args.database, create_tables=False))
    await database.start()
    # The test bot (its id is the crash test's BOT_ID), a slower poll and retry backoff.
    settings = bot_settings(
        args.api_server,
        private_chat_rate=args.private_rate,
        group_chat_rate=args.private_rate,
        bot_rate=args.bot_rate,
        poll_interval=0.5,
        retry_base=0.1,
        retry_max=1.0,
    )
    bot = build_bot(settings)
    notifications = Notifications(database.engine)
    sender = OutboxSender(
        bot, database.engine, settings, notifications=notifications, max_in_flight=args.in_flight
    )
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await notifications.start()
    await sender.start()
    print("ready", flush=True)
    try:
        await stopped.wait()
    finally:
        await sender.stop(5.0)
        await notifications.stop()
        await bot.session.close()
        await database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--api-server", required=True)
    parser.add_argument("--private-rate", type=float, default=1000.0)
    parser.add_argument("--bot-rate", type=float, default=1000.0)
    parser.add_argument("--in-flight", type=int, default=8)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
