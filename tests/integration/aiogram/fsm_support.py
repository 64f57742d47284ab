"""A started Database with the FSM table, a Bot on a recording session, and an update feeder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from db_manager import Base, Database, DatabaseSettings, UnitOfWork
from db_manager.telegram import setup_dispatcher
from db_manager.telegram.fsm import FsmRecord, SqlAlchemyStorage
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_ID, message_update

__all__ = ["FsmNote", "FsmRig", "fsm_rig"]


class FsmNote(Base):
    """A business row written by the test handlers next to their FSM changes."""

    __tablename__ = "fsmtest__notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))


@dataclass
class FsmRig:
    database: Database[UnitOfWork]
    dispatcher: Dispatcher
    bot: Bot
    storage: SqlAlchemyStorage

    async def feed(self, text: str, *, user_id: int = 7001, **kwargs: Any) -> Any:
        update = Update.model_validate(
            message_update(text, user_id=user_id), context={"bot": self.bot}
        )
        return await self.dispatcher.feed_update(self.bot, update, **kwargs)

    async def notes(self) -> list[str]:
        async with self.database.uow_factory() as uow:
            return list(
                (await uow.session.scalars(select(FsmNote.text).order_by(FsmNote.id))).all()
            )

    async def fsm_rows(self) -> int:
        async with self.database.uow_factory() as uow:
            return int(await uow.session.scalar(select(func.count()).select_from(FsmRecord)) or 0)


@asynccontextmanager
async def fsm_rig(
    settings: DatabaseSettings, dispatcher: Dispatcher | None = None
) -> AsyncIterator[FsmRig]:
    """The database started with every table, ``dispatcher`` set up on it, a recording bot."""
    database = Database(settings)
    await database.start()
    await database.create_all()
    if dispatcher is None:
        dispatcher = Dispatcher(storage=SqlAlchemyStorage())
    setup_dispatcher(dispatcher, database.uow_factory)
    # The dispatcher's own storage when it is ours; a reader of the same table otherwise.
    storage = dispatcher.storage
    if not isinstance(storage, SqlAlchemyStorage):
        storage = SqlAlchemyStorage(database.uow_factory)
    bot = Bot(f"{BOT_ID}:TEST", session=RecordingSession())
    try:
        yield FsmRig(database, dispatcher, bot, storage)
    finally:
        await bot.session.close()
        await database.dispose()
