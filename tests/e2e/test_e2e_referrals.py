"""Acceptance 1: /start, /ref, a deep-link referral, and the referral rules, end to end."""

from __future__ import annotations

from app.story import Story
from tests.support.updates import start_update, text_update

from .e2e_support import (
    LINK_PATTERN,
    USER_A,
    USER_B,
    Deployment,
    choice_ids,
)


async def _referral_link(deployment: Deployment, telegram_id: int) -> tuple[str, str]:
    """``/ref``: the whole answer and the code of the link in it."""
    answer = await deployment.deliver(text_update("/ref", user_id=telegram_id))
    assert answer is not None
    assert answer["method"] == "sendMessage"
    assert answer["chat_id"] == telegram_id
    found = LINK_PATTERN.search(answer["text"])
    assert found is not None, answer["text"]
    return answer["text"], found["code"]


async def _profile(deployment: Deployment, telegram_id: int) -> dict[str, object]:
    profile: dict[str, object] = await deployment.api_json(f"/api/users/{telegram_id}")
    return profile


async def test_start_ref_and_deep_link_referral(deployment: Deployment, story: Story) -> None:
    # A /start: registered, and the first scene with its inline keyboard comes back as the
    # webhook answer.
    answer = await deployment.deliver(start_update(user_id=USER_A, first_name="Alice"))
    assert answer is not None
    assert answer["method"] == "sendMessage"
    assert answer["chat_id"] == USER_A
    assert answer["text"] == story.start_scene.text
    assert choice_ids(answer["reply_markup"]) == [c.id for c in story.start_scene.choices]

    # A /ref: https://t.me/<bot username>?start=<code>, nobody joined yet.
    reply, code = await _referral_link(deployment, USER_A)
    assert reply.endswith("Joined through it: 0")
    assert (await _profile(deployment, USER_A))["referral_code"] == code

    # B /start <A's code>: B is A's referral.
    answer = await deployment.deliver(start_update(code, user_id=USER_B, first_name="Bob"))
    assert answer is not None
    assert answer["method"] == "sendMessage"
    assert answer["chat_id"] == USER_B
    assert "friend's link" in answer["text"]
    assert answer["text"].endswith(story.start_scene.text)
    # A hears of it through the outbox, after the commit.
    [notice] = await deployment.sent("sendMessage")
    assert notice.params["chat_id"] == USER_A
    assert notice.params["text"].startswith("Bob joined through your invitation link")

    b = await _profile(deployment, USER_B)
    assert b["referrer_telegram_id"] == USER_A
    assert b["first_name"] == "Bob"
    a = await _profile(deployment, USER_A)
    assert a["referral_count"] == 1
    assert a["referrer_telegram_id"] is None
    reply, _ = await _referral_link(deployment, USER_A)
    assert reply.endswith("Joined through it: 1")

    # The database agrees: two users, B's referrer is A, the link was used once.
    a_id = await deployment.user_row_id(USER_A)
    assert await deployment.scalar("SELECT count(*) FROM app__users") == 2
    assert (
        await deployment.scalar(
            "SELECT referrer_id FROM app__users WHERE telegram_id = :t", t=USER_B
        )
        == a_id
    )
    assert (
        await deployment.scalar("SELECT uses FROM app__referral_links WHERE code = :c", c=code) == 1
    )
    users_before = await deployment.rows(
        "SELECT id, telegram_id, referrer_id FROM app__users ORDER BY id"
    )
    links_before = await deployment.rows(
        "SELECT id, owner_id, code, uses FROM app__referral_links ORDER BY id"
    )

    # B /start <A's code> again: no second user, no second use, same referrer.
    answer = await deployment.deliver(start_update(code, user_id=USER_B, first_name="Bob"))
    assert answer is not None
    assert "friend's link" not in answer["text"]
    # A /start <A's own code>: no self-referral.
    answer = await deployment.deliver(start_update(code, user_id=USER_A, first_name="Alice"))
    assert answer is not None
    assert answer["text"] == story.start_scene.text

    assert (
        await deployment.rows("SELECT id, telegram_id, referrer_id FROM app__users ORDER BY id")
        == users_before
    )
    assert (
        await deployment.rows(
            "SELECT id, owner_id, code, uses FROM app__referral_links ORDER BY id"
        )
        == links_before
    )
    a = await _profile(deployment, USER_A)
    assert a["referrer_telegram_id"] is None
    assert a["referral_count"] == 1
    assert (await _profile(deployment, USER_B))["referrer_telegram_id"] == USER_A

    # Nothing else went through a second Bot API call: every answer rode the webhook
    # response; /ref's link uses the username fetched once at startup (no getMe); the
    # repeated and the self-referral notified nobody.
    await deployment.settled()
    assert deployment.telegram.method_names == ["sendMessage"]


async def test_referral_cycle_and_unknown_code_change_nothing(deployment: Deployment) -> None:
    await deployment.deliver(start_update(user_id=USER_A))
    _, code_a = await _referral_link(deployment, USER_A)
    await deployment.deliver(start_update(code_a, user_id=USER_B))
    _, code_b = await _referral_link(deployment, USER_B)
    before = await deployment.snapshot()

    # A came without a referrer; B's link would make A and B refer each other.
    answer = await deployment.deliver(start_update(code_b, user_id=USER_A))
    assert answer is not None
    assert "friend's link" not in answer["text"]
    # A code nobody owns: explained, and the user starts anyway.
    answer = await deployment.deliver(start_update("NoSuchCode", user_id=USER_A))
    assert answer is not None
    assert "not valid" in answer["text"]

    after = await deployment.snapshot()
    for table in ("users", "referral_links", "payments"):
        assert after[table] == before[table], table
    assert (await _profile(deployment, USER_A))["referrer_telegram_id"] is None
    assert (await _profile(deployment, USER_B))["referral_count"] == 0
