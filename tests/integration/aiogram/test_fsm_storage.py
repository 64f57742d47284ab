"""SqlAlchemyStorage passes the behaviours aiogram's own storage tests check for its storages
(tests/test_fsm/storage/test_storages.py), on SQLite and PostgreSQL, both outside an update
(each call its own unit of work) and inside one bound unit of work. Issue 14, point 1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

import pytest
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from db_manager import DatabaseSettings
from db_manager.errors import DatabaseManagerError
from db_manager.telegram import bind_unit_of_work
from db_manager.telegram.fsm import SqlAlchemyStorage

from .fsm_support import FsmRig, fsm_rig

KEY = StorageKey(bot_id=42, chat_id=-1001, user_id=7)


class Form(StatesGroup):
    name = State()


@pytest.fixture
async def rig(db_settings: DatabaseSettings) -> AsyncIterator[FsmRig]:
    async with fsm_rig(db_settings) as rig:
        yield rig


Scope = Callable[[FsmRig], AbstractAsyncContextManager[object]]


@asynccontextmanager
async def one_unit_of_work(rig: FsmRig) -> AsyncIterator[object]:
    async with rig.database.uow_factory() as uow:
        with bind_unit_of_work(uow):
            yield uow


def per_call(rig: FsmRig) -> AbstractAsyncContextManager[object]:
    return nullcontext()


@pytest.fixture(params=[per_call, one_unit_of_work], ids=["per-call", "one-uow"])
def scope(request: pytest.FixtureRequest) -> Scope:
    return request.param  # type: ignore[no-any-return]


async def test_set_state(rig: FsmRig, scope: Scope) -> None:
    storage = rig.storage
    async with scope(rig):
        assert await storage.get_state(KEY) is None
        await storage.set_state(KEY, "state")
        assert await storage.get_state(KEY) == "state"
        await storage.set_state(KEY, Form.name)
        assert await storage.get_state(KEY) == "Form:name"
        await storage.set_state(KEY, None)
        assert await storage.get_state(KEY) is None


async def test_set_data(rig: FsmRig, scope: Scope) -> None:
    storage = rig.storage
    async with scope(rig):
        assert await storage.get_data(KEY) == {}
        await storage.set_data(KEY, {"foo": "bar", "nested": {"n": [1, 2]}})
        assert await storage.get_data(KEY) == {"foo": "bar", "nested": {"n": [1, 2]}}
        await storage.set_data(KEY, {})
        assert await storage.get_data(KEY) == {}


async def test_update_data(rig: FsmRig, scope: Scope) -> None:
    storage = rig.storage
    async with scope(rig):
        assert await storage.update_data(KEY, {"foo": "bar"}) == {"foo": "bar"}
        assert await storage.update_data(KEY, {}) == {"foo": "bar"}
        assert await storage.update_data(KEY, {"baz": "spam"}) == {"foo": "bar", "baz": "spam"}
        assert await storage.update_data(KEY, {"baz": "test"}) == {"foo": "bar", "baz": "test"}
        assert await storage.get_data(KEY) == {"foo": "bar", "baz": "test"}


async def test_get_value_with_and_without_default(rig: FsmRig, scope: Scope) -> None:
    storage = rig.storage
    async with scope(rig):
        await storage.set_data(KEY, {"hello": "world"})
        assert await storage.get_value(KEY, "hello") == "world"
        assert await storage.get_value(KEY, "missing") is None
        assert await storage.get_value(KEY, "missing", "fallback") == "fallback"


async def test_returned_data_is_a_copy(rig: FsmRig, scope: Scope) -> None:
    storage = rig.storage
    async with scope(rig):
        await storage.set_data(KEY, {"items": [1]})
        data = await storage.get_data(KEY)
        data["items"].append(2)
        assert await storage.get_data(KEY) == {"items": [1]}


@pytest.mark.parametrize(
    "other",
    [
        StorageKey(bot_id=43, chat_id=-1001, user_id=7),
        StorageKey(bot_id=42, chat_id=-1002, user_id=7),
        StorageKey(bot_id=42, chat_id=-1001, user_id=8),
        StorageKey(bot_id=42, chat_id=-1001, user_id=7, thread_id=5),
        StorageKey(bot_id=42, chat_id=-1001, user_id=7, business_connection_id="bc1"),
        StorageKey(bot_id=42, chat_id=-1001, user_id=7, destiny="scene"),
    ],
    ids=["bot", "chat", "user", "thread", "business", "destiny"],
)
async def test_every_key_field_isolates(rig: FsmRig, scope: Scope, other: StorageKey) -> None:
    storage = rig.storage
    async with scope(rig):
        await storage.set_state(KEY, "mine")
        await storage.set_data(KEY, {"who": "mine"})
        await storage.set_state(other, "theirs")
        await storage.set_data(other, {"who": "theirs"})
    assert await storage.get_state(KEY) == "mine"
    assert await storage.get_data(KEY) == {"who": "mine"}
    assert await storage.get_state(other) == "theirs"
    assert await storage.get_data(other) == {"who": "theirs"}


async def test_fsm_context_clear_forgets_state_and_data(rig: FsmRig, scope: Scope) -> None:
    context = FSMContext(rig.storage, KEY)
    async with scope(rig):
        await context.set_state(Form.name)
        await context.update_data(name="Ada")
    async with scope(rig):
        await context.clear()
        assert await context.get_state() is None
        assert await context.get_data() == {}
    assert await context.get_state() is None
    assert await context.get_data() == {}


async def test_state_survives_a_new_storage_on_the_same_database(rig: FsmRig) -> None:
    await rig.storage.set_state(KEY, "kept")
    await rig.storage.set_data(KEY, {"n": 1})
    fresh = SqlAlchemyStorage(rig.database.uow_factory)
    assert await fresh.get_state(KEY) == "kept"
    assert await fresh.get_data(KEY) == {"n": 1}


async def test_a_rolled_back_unit_of_work_keeps_the_previous_state(rig: FsmRig) -> None:
    await rig.storage.set_state(KEY, "before")
    with pytest.raises(RuntimeError):
        async with rig.database.uow_factory() as uow:
            with bind_unit_of_work(uow):
                await rig.storage.set_state(KEY, "after")
                assert await rig.storage.get_state(KEY) == "after"
                raise RuntimeError("handler failed")
    assert await rig.storage.get_state(KEY) == "before"


async def test_an_explicit_commit_writes_and_later_changes_follow(rig: FsmRig) -> None:
    async with rig.database.uow_factory() as uow:
        with bind_unit_of_work(uow):
            await rig.storage.set_state(KEY, "first")
            await uow.commit()
            assert await SqlAlchemyStorage(rig.database.uow_factory).get_state(KEY) == "first"
            await rig.storage.set_state(KEY, "second")
    assert await rig.storage.get_state(KEY) == "second"


async def test_without_a_factory_outside_an_update_the_error_says_what_to_do() -> None:
    with pytest.raises(DatabaseManagerError, match="outside an update and has no uow_factory"):
        await SqlAlchemyStorage().get_state(KEY)
