"""FSM state inside the update's transaction: a handler's row and its state commit or roll
back together (issue 14, point 2), concurrent updates of one user lose nothing (point 3, one
process), and reading plus setting state costs at most two statements and no transaction
(point 5), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiogram import Dispatcher, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.scene import Scene, SceneRegistry, on
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.strategy import FSMStrategy
from aiogram.types import Message, Update
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from db_manager import DatabaseSettings, UnitOfWork
from db_manager.telegram import setup_dispatcher
from db_manager.telegram.fsm import SqlAlchemyStorage
from tests.support.updates import BOT_ID, GROUP_CHAT_ID, message, next_update_id

from .fsm_support import FsmNote, fsm_rig

USER = 7001


class Form(StatesGroup):
    name = State()


def build_router() -> Router:
    router = Router()

    @router.message(Command("note"))
    async def note(message: Message, uow: UnitOfWork, state: FSMContext) -> None:
        uow.session.add(FsmNote(text=message.text or ""))
        await state.set_state(Form.name)
        await state.update_data(asked=True)
        if "boom" in (message.text or ""):
            raise RuntimeError("handler failed after writing")

    @router.message(Command("plain"))
    async def plain(message: Message, uow: UnitOfWork) -> None:
        uow.session.add(FsmNote(text="plain"))

    @router.message(Command("step"))
    async def step(message: Message, uow: UnitOfWork, state: FSMContext) -> None:
        uow.session.add(FsmNote(text="step"))
        previous = await state.get_state()
        await state.set_state(Form.name if previous is None else None)
        await state.update_data(step=await state.get_value("step", 0) + 1)

    @router.message(Command("count"))
    async def count(message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        await asyncio.sleep(0)  # let the racing updates interleave
        await state.update_data(counter=data.get("counter", 0) + 1)

    @router.message(StateFilter(Form.name), F.text)
    async def answered(message: Message, uow: UnitOfWork, state: FSMContext) -> None:
        uow.session.add(FsmNote(text=f"name={message.text}"))
        await state.clear()

    return router


def dispatcher(**kwargs: Any) -> Dispatcher:
    dp = Dispatcher(storage=kwargs.pop("storage", None) or SqlAlchemyStorage(), **kwargs)
    dp.include_router(build_router())
    return dp


KEY = StorageKey(bot_id=BOT_ID, chat_id=USER, user_id=USER)


# -- 2. atomicity -------------------------------------------------------------------------------


async def test_a_failing_handler_stores_neither_its_row_nor_its_state(
    db_settings: DatabaseSettings,
) -> None:
    async with fsm_rig(db_settings, dispatcher()) as rig:
        with pytest.raises(RuntimeError, match="handler failed"):
            await rig.feed("/note boom", user_id=USER)
        assert await rig.notes() == []
        assert await rig.storage.get_state(KEY) is None
        assert await rig.storage.get_data(KEY) == {}


async def test_a_succeeding_handler_stores_both(db_settings: DatabaseSettings) -> None:
    async with fsm_rig(db_settings, dispatcher()) as rig:
        await rig.feed("/note ok", user_id=USER)
        assert await rig.notes() == ["/note ok"]
        assert await rig.storage.get_state(KEY) == "Form:name"
        assert await rig.storage.get_data(KEY) == {"asked": True}


async def test_the_next_message_is_routed_by_the_stored_state(
    db_settings: DatabaseSettings,
) -> None:
    async with fsm_rig(db_settings, dispatcher()) as rig:
        await rig.feed("/note ok", user_id=USER)
        await rig.feed("Ada", user_id=USER)
        await rig.feed("not in a state any more", user_id=USER)
        assert await rig.notes() == ["/note ok", "name=Ada"]
        assert await rig.storage.get_state(KEY) is None


async def test_aiogram_fsm_middleware_runs_inside_the_unit_of_work(
    db_settings: DatabaseSettings,
) -> None:
    dp = dispatcher()
    assert dp.fsm in dp.update.outer_middleware
    async with fsm_rig(db_settings, dp):
        assert dp.fsm not in dp.update.outer_middleware
        assert list(dp.update.middleware)[-1] is dp.fsm
    async with fsm_rig(db_settings, dp):  # set up again (a restarted lifespan): still last
        assert list(dp.update.middleware)[-1] is dp.fsm
        assert len(dp.update.middleware) == 2


async def test_another_storage_keeps_aiogram_order(db_settings: DatabaseSettings) -> None:
    dp = dispatcher(storage=MemoryStorage())
    async with fsm_rig(db_settings, dispatcher()) as rig:
        setup_dispatcher(dp, rig.database.uow_factory)
        assert dp.fsm in dp.update.outer_middleware


# -- 3. no lost update, one process -------------------------------------------------------------


async def test_fifty_concurrent_updates_of_one_user_lose_nothing(
    db_settings: DatabaseSettings,
) -> None:
    async with fsm_rig(db_settings, dispatcher()) as rig:
        await asyncio.gather(*(rig.feed("/count", user_id=USER) for _ in range(50)))
        assert await rig.storage.get_data(KEY) == {"counter": 50}


# -- strategies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "stored_as"),
    [
        (FSMStrategy.USER_IN_CHAT, StorageKey(BOT_ID, GROUP_CHAT_ID, 11)),
        (FSMStrategy.CHAT, StorageKey(BOT_ID, GROUP_CHAT_ID, GROUP_CHAT_ID)),
        (FSMStrategy.GLOBAL_USER, StorageKey(BOT_ID, 11, 11)),
        (FSMStrategy.USER_IN_TOPIC, StorageKey(BOT_ID, GROUP_CHAT_ID, 11, thread_id=9)),
        (FSMStrategy.CHAT_TOPIC, StorageKey(BOT_ID, GROUP_CHAT_ID, GROUP_CHAT_ID, thread_id=9)),
    ],
)
async def test_every_strategy_stores_under_its_key(
    db_settings: DatabaseSettings, strategy: FSMStrategy, stored_as: StorageKey
) -> None:
    async with fsm_rig(db_settings, dispatcher(fsm_strategy=strategy)) as rig:
        payload = message("/note topic", user_id=11, chat_id=GROUP_CHAT_ID)
        payload["chat"] = {
            "id": GROUP_CHAT_ID,
            "type": "supergroup",
            "title": "g",
            "is_forum": True,
        }
        payload["message_thread_id"] = 9
        payload["is_topic_message"] = True
        update = Update.model_validate(
            {"update_id": next_update_id(), "message": payload}, context={"bot": rig.bot}
        )
        await rig.dispatcher.feed_update(rig.bot, update)
        assert await rig.storage.get_state(stored_as) == "Form:name"


# -- scenes, and a task that outlives its update ---------------------------------------------


class NameScene(Scene, state="naming"):
    @on.message.enter()
    async def asked(self, message: Message) -> None:
        await message.answer("What is your character's name?")

    @on.message(F.text)
    async def named(self, message: Message, uow: UnitOfWork) -> None:
        uow.session.add(FsmNote(text=f"named {message.text}"))
        await self.wizard.exit()


async def test_an_aiogram_scene_runs_on_the_storage(db_settings: DatabaseSettings) -> None:
    dp = dispatcher()
    scene_router = Router()
    scene_router.message.register(NameScene.as_handler(), Command("name"))
    dp.include_router(scene_router)
    SceneRegistry(dp).add(NameScene)
    async with fsm_rig(db_settings, dp) as rig:
        await rig.feed("/name", user_id=USER)
        assert await rig.storage.get_state(KEY) == "naming"
        await rig.feed("Ada", user_id=USER)
        assert await rig.notes() == ["named Ada"]
        assert await rig.storage.get_state(KEY) is None


async def test_a_task_that_outlives_its_update_uses_a_unit_of_work_of_its_own(
    db_settings: DatabaseSettings,
) -> None:
    tasks: list[asyncio.Task[None]] = []
    dp = dispatcher()
    later = Router()

    @later.message(Command("later"))
    async def schedule(message: Message, state: FSMContext) -> None:
        async def afterwards() -> None:
            await asyncio.sleep(0.05)  # the update's unit of work is closed by now
            await state.set_state("reminded")

        tasks.append(asyncio.create_task(afterwards()))

    dp.include_router(later)
    async with fsm_rig(db_settings, dp) as rig:
        await rig.feed("/later", user_id=USER)
        await asyncio.gather(*tasks)
        assert await rig.storage.get_state(KEY) == "reminded"


# -- 5. statements and transactions -------------------------------------------------------------


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[dict[str, int]]:
    counts = {"statements": 0, "begin": 0, "commit": 0}

    def on_statement(*_: Any) -> None:
        counts["statements"] += 1

    def on_begin(*_: Any) -> None:
        counts["begin"] += 1

    def on_commit(*_: Any) -> None:
        counts["commit"] += 1

    sync = engine.sync_engine
    listeners = [
        ("before_cursor_execute", on_statement),
        ("begin", on_begin),
        ("commit", on_commit),
    ]
    for name, fn in listeners:
        event.listen(sync, name, fn)
    try:
        yield counts
    finally:
        for name, fn in listeners:
            event.remove(sync, name, fn)


async def test_reading_and_setting_state_adds_at_most_two_statements_and_no_transaction(
    db_settings: DatabaseSettings,
) -> None:
    async with fsm_rig(db_settings, dispatcher(storage=MemoryStorage())) as plain_rig:
        await plain_rig.feed("/step", user_id=USER)  # warm up
        with counting(plain_rig.database.engine) as without_fsm:
            await plain_rig.feed("/step", user_id=USER)
    async with fsm_rig(db_settings, dispatcher()) as rig:
        await rig.feed("/step", user_id=USER)  # the row exists from here on
        with counting(rig.database.engine) as with_fsm:
            await rig.feed("/step", user_id=USER)
        await rig.feed("/plain", user_id=USER + 1)  # a key never seen: the row is created
        with counting(rig.database.engine) as new_key:
            await rig.feed("/step", user_id=USER + 2)
        assert await rig.storage.get_data(KEY) == {"step": 2}
        assert await rig.storage.get_state(KEY) is None
        assert await rig.storage.get_data(StorageKey(BOT_ID, USER + 2, USER + 2)) == {"step": 1}
        assert await rig.storage.get_state(StorageKey(BOT_ID, USER + 2, USER + 2)) == "Form:name"
    print(f"\nstatements without FSM {without_fsm}, with {with_fsm}, new key {new_key}")
    assert with_fsm["begin"] == without_fsm["begin"] == 1
    assert with_fsm["commit"] == without_fsm["commit"] == 1
    assert new_key["begin"] == 1
    assert 1 <= with_fsm["statements"] - without_fsm["statements"] <= 2
    assert 1 <= new_key["statements"] - without_fsm["statements"] <= 2
