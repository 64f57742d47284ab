"""The webhook bounds one update's processing by ``[bot] processing_timeout`` (issue 11,
point 6), whatever holds it (here a handler waiting on something slow, e.g. a Bot API call):
the update is cancelled, rolled back and answered 503, and Telegram's redelivery is applied
once. A request cancelled by the server (the client left) cancels its update too, and the
cancellation completes only once the update has rolled back and given its connection back.
Both backends.
"""

from __future__ import annotations

import asyncio
import time

from db_manager import DatabaseSettings, create_engine
from tests.support.asgi import running
from tests.support.scenario_app import (
    Run,
    count_marks,
    post_update,
    recorded_updates,
    scenario_app,
    telegram_settings,
)
from tests.support.updates import message_update, next_update_id


async def test_an_update_over_processing_timeout_is_rolled_back_and_answered_503(
    db_settings: DatabaseSettings,
) -> None:
    slow_once = [True]

    async def slow(run: Run) -> None:
        await run.uow.session.flush()  # written, not committed
        if slow_once[0]:
            slow_once[0] = False
            await asyncio.sleep(30)

    bot = telegram_settings(processing_timeout=0.5)
    app = scenario_app(db_settings, {"slow": slow}, telegram=bot)
    observer = create_engine(db_settings)
    update = message_update("slow", update_id=next_update_id())
    try:
        async with running(app) as client:
            started = time.monotonic()
            down = await post_update(client, update)
            took = time.monotonic() - started
            assert (down.status_code, down.headers.get("Retry-After")) == (503, "1"), down.text
            assert bot.processing_timeout <= took < bot.processing_timeout + 1.0, took
            assert app.state.engine.pool.checkedout() == 0  # rolled back within the grace
            assert await count_marks(observer, "slow") == 0
            assert await recorded_updates(observer) == []

            again = await post_update(client, update)
            twice = await post_update(client, update)
            assert (again.status_code, twice.status_code) == (200, 200)
            assert await count_marks(observer, "slow") == 1
    finally:
        await observer.dispose()


async def test_a_cancelled_request_cancels_its_update_after_the_rollback(
    db_settings: DatabaseSettings,
) -> None:
    inside = asyncio.Event()

    async def waits(run: Run) -> None:
        await run.uow.session.flush()
        inside.set()
        await asyncio.sleep(30)

    app = scenario_app(db_settings, {"waits": waits})
    observer = create_engine(db_settings)
    try:
        async with running(app) as client:
            request = asyncio.ensure_future(
                post_update(client, message_update("waits", update_id=next_update_id()))
            )
            await asyncio.wait_for(inside.wait(), 10)
            assert app.state.engine.pool.checkedout() == 1
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
            assert request.cancelled()
            assert app.state.engine.pool.checkedout() == 0  # given back before that
            assert await count_marks(observer, "waits") == 0
    finally:
        await observer.dispose()
