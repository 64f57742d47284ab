"""Why every app update through the webhook was dropped: a SAVEPOINT re-ran the dedup hook.

The app's services use SAVEPOINTs (``insert_once``: a unique constraint decides a race).
SQLAlchemy fires the session's ``after_begin`` for a nested transaction too, so the hook
that records ``(bot_id, update_id)`` ran a second time inside the same transaction, found
its own row and raised ``DuplicateUpdate``: the first delivery of ``/start`` was skipped as
a duplicate and rolled back. A begin hook must run once per top-level transaction.
"""

from __future__ import annotations

from sqlalchemy import func, select, text

from db_manager import Database, DatabaseSettings, UnitOfWork
from db_manager.telegram.store import TelegramUpdate, deduplicate_update


async def test_savepoint_in_a_deduplicated_unit_of_work_is_not_a_duplicate(
    db_settings: DatabaseSettings,
) -> None:
    database: Database[UnitOfWork] = Database(db_settings)
    await database.start()
    try:
        await database.create_all()
        async with database.uow_factory() as uow:
            record = deduplicate_update(uow, 123456, 1)
            await uow.session.execute(text("SELECT 1"))  # begins: the update is recorded
            async with uow.session.begin_nested():  # a SAVEPOINT is not a new transaction
                await uow.session.execute(text("SELECT 2"))
            assert not record.duplicate
        async with database.uow_factory() as uow:
            count = await uow.session.scalar(select(func.count()).select_from(TelegramUpdate))
        assert count == 1
    finally:
        await database.dispose()
