"""The app at its edge, for the hardening tests: the real webhook and API, and the limits.

``edge_app(database)`` runs ``create_app`` with its lifespan (Telegram replaced by a
``RecordingSession``); :func:`limit_violations` reads every app table directly (on an engine
of the test's own) and counts the rows that break a limit of the edge: ids, lengths of
``String(n)`` columns, NUL in text, bounded message texts, payment amounts and currencies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncEngine

import app.models  # noqa: F401  (the app's tables on Base.metadata)
from app.config import AppSection, Settings
from app.main import create_app
from db_manager import Base, DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_USERNAME, secret_header

from .outbox_support import bot_settings

API_TOKEN = "edge-api-token-0123456789"
WEBHOOK_PATH = "/webhook/telegram"
BIGINT_MAX = 2**63 - 1
MESSAGE_TEXT_MAX = 4096


def edge_settings(
    database: DatabaseSettings, *, api_token: str | None = API_TOKEN, docs: bool = True
) -> Settings:
    return Settings(
        app=AppSection(
            api_token=SecretStr(api_token) if api_token is not None else None, docs=docs
        ),
        bot=bot_settings(),
        database=database,
    )


@dataclass
class EdgeApp:
    client: httpx.AsyncClient
    telegram: RecordingSession
    db: AsyncEngine

    async def post(self, update: Mapping[str, Any] | bytes) -> httpx.Response:
        """POST one webhook body as Telegram does (JSON, or raw bytes as given)."""
        if isinstance(update, bytes):
            return await self.client.post(
                WEBHOOK_PATH,
                content=update,
                headers={**secret_header(), "Content-Type": "application/json"},
            )
        return await self.client.post(WEBHOOK_PATH, json=update, headers=secret_header())

    async def api(self, path: str, *, token: str | None = API_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.client.get(path, headers=headers)

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.db.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]

    async def count(self, table: str) -> int:
        return int((await self.rows(f"SELECT count(*) FROM {table}"))[0][0])


@asynccontextmanager
async def edge_app(
    database: DatabaseSettings, *, api_token: str | None = API_TOKEN, docs: bool = True
) -> AsyncIterator[EdgeApp]:
    telegram = RecordingSession(bot_username=BOT_USERNAME)
    app = create_app(
        edge_settings(database, api_token=api_token, docs=docs),
        bot_session=telegram,
        configure_logs=False,
    )
    engine = create_engine(database)
    try:
        async with running(app) as client:
            yield EdgeApp(client=client, telegram=telegram, db=engine)
    finally:
        await engine.dispose()


def _violation_queries(dialect: str) -> dict[str, str]:
    """``{"table.column rule": SELECT count(*) ...}`` for every limit of the edge."""
    queries = {
        "app__users.telegram_id in 1..2**63-1": (
            f"SELECT count(*) FROM app__users WHERE telegram_id < 1 OR telegram_id > {BIGINT_MAX}"
        ),
        "app__novel_messages.text bounded": (
            f"SELECT count(*) FROM app__novel_messages WHERE length(text) > {MESSAGE_TEXT_MAX}"
        ),
        "app__payments.amount in 1..2**63-1": (
            f"SELECT count(*) FROM app__payments WHERE amount < 1 OR amount > {BIGINT_MAX}"
        ),
        "app__payments.currency three capitals": (
            "SELECT count(*) FROM app__payments WHERE length(currency) <> 3"
            " OR currency <> upper(currency)"
        ),
        "app__payments.charge id not empty": (
            "SELECT count(*) FROM app__payments WHERE length(telegram_payment_charge_id) = 0"
        ),
    }
    for table in Base.metadata.sorted_tables:
        if not table.name.startswith("app__"):
            continue
        for column in table.columns:
            if isinstance(column.type, String) and column.type.length is not None:
                queries[f"{table.name}.{column.name} length <= {column.type.length}"] = (
                    f"SELECT count(*) FROM {table.name}"
                    f" WHERE length({column.name}) > {column.type.length}"
                )
            # PostgreSQL cannot store NUL in text at all; SQLite can, and must not get any.
            if dialect == "sqlite" and isinstance(column.type, String):
                queries[f"{table.name}.{column.name} without NUL"] = (
                    f"SELECT count(*) FROM {table.name} WHERE instr({column.name}, char(0)) > 0"
                )
    return queries


async def limit_violations(edge: EdgeApp) -> dict[str, int]:
    """Each broken limit with the number of rows that break it (empty: none)."""
    found = {}
    for rule, sql in _violation_queries(edge.db.dialect.name).items():
        count = int((await edge.rows(sql))[0][0])
        if count:
            found[rule] = count
    return found


def tracebacks(
    structlog_entries: Sequence[MutableMapping[str, Any]], records: list[Any]
) -> list[str]:
    """The log entries (structlog's, and the standard library's records) that carry a
    traceback or are errors."""
    found = [
        " ".join(str(entry.get(key, "")) for key in ("event", "error_type", "error"))[:300]
        for entry in structlog_entries
        if entry.get("exc_info")
        or "exception" in entry
        or entry.get("log_level") in {"error", "critical"}
    ]
    found += [record.getMessage() for record in records if record.exc_info or record.levelno >= 40]
    return found
