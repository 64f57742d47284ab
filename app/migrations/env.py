"""Alembic environment: the app's models on db_manager's Base, run by db_manager."""

import app.models  # noqa: F401  (registers the app's tables on Base.metadata)
import db_manager.idempotency  # (db_manager's own idempotency_keys table, for app.api.writes)
import db_manager.telegram.inbox  # (db_manager's own telegram_inbox table, [bot] processing = "inbox")
import db_manager.telegram.store  # noqa: F401  (db_manager's own telegram_updates table)
from db_manager.migrations import run_env

run_env()
