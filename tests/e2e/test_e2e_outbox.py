"""The reference app's outbox, end to end: handler -> outbox row -> sender -> HTTP Bot API.

The app runs with ``[bot] api_server`` pointing at a real HTTP fake of the Bot API
(:class:`~tests.support.fake_bot_api.FakeBotApi`); nothing of the app is replaced.
"""

from __future__ import annotations

import asyncio

from app.story import Story
from db_manager import DatabaseSettings
from tests.support.fake_bot_api import FakeBotApi
from tests.support.updates import callback_query_update, start_update

from .fake_deployment import FakeDeployment, against_fake, my_chat_member_update
from .outbox_support import delivered

USER = 7_100_001
USERS = tuple(range(7_100_001, 7_100_006))  # five readers
SCENE_MESSAGE_ID = 77


async def test_the_next_scene_arrives_after_refusals_and_the_webhook_does_not_wait_for_it(
    db_settings: DatabaseSettings, story: Story
) -> None:
    async with FakeBotApi() as fake, against_fake(db_settings, fake) as app:
        first = (await app.deliver(start_update(user_id=USER))).json()
        assert first["text"] == story.start_scene.text  # /start answers in the webhook
        choice = next(c for c in story.start_scene.choices if not story.scene(c.target).premium)
        target = story.scene(choice.target)

        # The Bot API refuses every edit (500) until told otherwise.
        fake.fail("editMessageText", status=500, times=None)
        press = callback_query_update(
            f"choice:{choice.id}",
            user_id=USER,
            message_id=SCENE_MESSAGE_ID,
            message_text=story.start_scene.text,
        )
        answer = (await app.deliver(press)).json()
        assert answer["method"] == "answerCallbackQuery"
        assert "text" not in answer
        # The button was answered while no edit could get through: nothing waited for it.
        assert fake.delivered("editMessageText") == []
        await fake.wait_calls(2, "editMessageText")
        fake.clear_failures()

        [edit] = await delivered(fake, "editMessageText")
        assert edit.chat_id == USER
        assert edit.params["message_id"] == SCENE_MESSAGE_ID
        assert edit.params["text"] == target.text
        buttons = [
            b["callback_data"]
            for row in edit.params["reply_markup"]["inline_keyboard"]
            for b in row
        ]
        assert buttons == [f"choice:{c.id}" for c in target.choices]
        attempts = fake.calls_of("editMessageText")
        statuses = [call.status for call in attempts]
        assert statuses[-1] == 200
        assert len(statuses) >= 3
        assert set(statuses[:-1]) == {500}
        assert await app.settled() == [("editMessageText", "sent", USER)]
        [(tries,)] = await app.rows("SELECT attempts FROM db_manager__telegram_outbox")
        assert tries == len(attempts)
        # The state was saved with the enqueued edit.
        [(scene,)] = await app.rows("SELECT scene FROM app__novel_states")
        assert scene == target.id


async def _broadcast(app: FakeDeployment, text: str, expected: int) -> None:
    response = await app.post_api("/api/broadcast", {"text": text})
    assert response.status_code == 202, response.text
    assert response.json() == {"enqueued": expected}


def _receivers(fake: FakeBotApi, text: str) -> set[int]:
    return {
        int(call.chat_id)  # type: ignore[arg-type]
        for call in fake.delivered("sendMessage")
        if call.params.get("text") == text
    }


async def test_blocked_users_are_skipped_unblocked_ones_included_and_a_403_marks_them(
    db_settings: DatabaseSettings,
) -> None:
    async with FakeBotApi() as fake, against_fake(db_settings, fake) as app:
        for number, telegram_id in enumerate(USERS):
            await app.deliver(start_update(user_id=telegram_id, first_name=f"Reader{number}"))
        blocked, refusing = USERS[1], USERS[3]

        # The user blocks the bot: Telegram says so with my_chat_member "kicked".
        await app.deliver(my_chat_member_update(blocked, "kicked"))
        assert await app.unreachable() == {blocked}
        await _broadcast(app, "first", len(USERS) - 1)
        await app.settled()
        assert _receivers(fake, "first") == set(USERS) - {blocked}

        # Unblocked ("member" again): included in the next broadcast.
        await app.deliver(my_chat_member_update(blocked, "member"))
        assert await app.unreachable() == set()
        await _broadcast(app, "second", len(USERS))
        await app.settled()
        assert _receivers(fake, "second") == set(USERS)

        # A 403 on one user's message: their row is dead and they become unreachable.
        fake.fail("sendMessage", chat_id=refusing, status=403)
        await _broadcast(app, "third", len(USERS))
        rows = await app.settled()
        assert ("sendMessage", "dead", refusing) in rows
        assert _receivers(fake, "third") == set(USERS) - {refusing}
        await _until_unreachable(app, {refusing})
        await _broadcast(app, "fourth", len(USERS) - 1)
        await app.settled()
        assert _receivers(fake, "fourth") == set(USERS) - {refusing}
        # Every message that went out was sent once: one call per user and text.
        sends = [(call.chat_id, call.params["text"]) for call in fake.delivered("sendMessage")]
        assert len(sends) == len(set(sends)) == 4 + 5 + 4 + 4


async def _until_unreachable(app: FakeDeployment, expected: set[int]) -> None:
    # on_forbidden runs after the sender committed the dead row: a moment later.
    for _ in range(1000):
        if await app.unreachable() == expected:
            return
        await asyncio.sleep(0.01)
    assert await app.unreachable() == expected


async def test_broadcast_refuses_texts_telegram_cannot_send_and_replays_a_repeated_key(
    db_settings: DatabaseSettings,
) -> None:
    async with FakeBotApi() as fake, against_fake(db_settings, fake) as app:
        for telegram_id in USERS[:2]:
            await app.deliver(start_update(user_id=telegram_id))
        for body in ({"text": ""}, {"text": " \n\t"}, {"text": "x" * 4097}, {"text": "a\x00b"}, {}):
            response = await app.post_api("/api/broadcast", body)
            assert response.status_code == 422, (body, response.text)
        no_token = await app.client.post("/api/broadcast", json={"text": "hello"})
        assert no_token.status_code == 401
        assert await app.settled() == []

        longest = "é" * 4096
        key = {"Idempotency-Key": "broadcast-0001"}
        first = await app.post_api("/api/broadcast", {"text": longest}, headers=key)
        assert first.status_code == 202, first.text
        assert first.json() == {"enqueued": 2}
        again = await app.post_api("/api/broadcast", {"text": longest}, headers=key)
        assert again.status_code == 202
        assert again.json() == {"enqueued": 2}
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await app.settled() == [("sendMessage", "sent", u) for u in USERS[:2]]
        assert _receivers(fake, longest) == set(USERS[:2])


async def test_a_referrer_hears_of_a_new_reader_unless_they_blocked_the_bot(
    db_settings: DatabaseSettings,
) -> None:
    referrer, reader, later = USERS[0], USERS[1], USERS[2]
    async with FakeBotApi() as fake, against_fake(db_settings, fake) as app:
        await app.deliver(start_update(user_id=referrer, first_name="Ann"))
        [(code,)] = await app.rows("SELECT code FROM app__referral_links")
        await app.deliver(start_update(code, user_id=reader, first_name="Ben"))
        [notice] = await delivered(fake, "sendMessage", chat_id=referrer)
        assert notice.params["text"].startswith("Ben joined through your invitation link")

        # The referrer blocks the bot: the next join is recorded, and nobody is notified.
        await app.deliver(my_chat_member_update(referrer, "kicked"))
        await app.deliver(start_update(code, user_id=later, first_name="Cid"))
        assert await app.rows("SELECT count(*) FROM app__users WHERE referrer_id IS NOT NULL") == [
            (2,)
        ]
        assert await app.settled() == [("sendMessage", "sent", referrer)]
        # Writing to the bot again (/start) makes the referrer reachable.
        await app.deliver(start_update(user_id=referrer, first_name="Ann"))
        assert await app.unreachable() == set()
