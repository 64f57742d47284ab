"""The app's models: table names, shared base, timezone-aware timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite

import app.models
from app.models import AppModel, UTCDateTime
from db_manager import Base

EXPECTED_TABLES = {
    "User": "app__users",
    "ReferralLink": "app__referral_links",
    "Payment": "app__payments",
    "NovelState": "app__novel_states",
    "NovelMessage": "app__novel_messages",
}


def test_every_model_derives_from_app_model_and_is_named_app_table() -> None:
    for name, table in EXPECTED_TABLES.items():
        model = getattr(app.models, name)
        assert issubclass(model, AppModel) and issubclass(model, Base)
        assert model.__tablename__ == table
        assert Base.metadata.tables[table] is model.__table__
    assert AppModel.__abstract__


def test_unique_constraints_that_the_services_rely_on() -> None:
    def unique(table: str, column: str) -> bool:
        col = Base.metadata.tables[table].c[column]
        return bool(col.unique) or any(
            isinstance(c, UniqueConstraint) and set(c.columns.keys()) == {column}
            for c in Base.metadata.tables[table].constraints
        )

    assert unique("app__users", "telegram_id")
    assert unique("app__referral_links", "owner_id")
    assert unique("app__referral_links", "code")
    assert unique("app__payments", "telegram_payment_charge_id")
    assert unique("app__novel_states", "user_id")


def test_utc_datetime_reads_aware_values_in_utc() -> None:
    column_type = UTCDateTime()
    dialect = sqlite.dialect()
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert column_type.process_result_value(naive, dialect) == naive.replace(tzinfo=UTC)
    plus_two = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    pg = postgresql.dialect()
    read = column_type.process_result_value(plus_two, pg)
    assert read is not None and read.tzinfo is UTC and read == plus_two
    assert column_type.process_result_value(None, dialect) is None


def test_utc_datetime_writes_utc_and_refuses_naive_values() -> None:
    column_type = UTCDateTime()
    dialect = postgresql.dialect()
    plus_two = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    written = column_type.process_bind_param(plus_two, dialect)
    assert written is not None and written.tzinfo is UTC and written.hour == 3
    with pytest.raises(ValueError, match="naive datetime"):
        column_type.process_bind_param(datetime(2026, 1, 1), dialect)
