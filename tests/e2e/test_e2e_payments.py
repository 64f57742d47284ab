"""Acceptance 3: /buy, pre-checkout, the successful payment once, premium unlocked."""

from __future__ import annotations

import asyncio
from typing import Any

from app.story import Story
from tests.support.updates import (
    next_update_id,
    pre_checkout_query_update,
    start_update,
    successful_payment_update,
    text_update,
)

from .e2e_support import (
    USER_A,
    USER_B,
    Deployment,
    current_scene,
    press,
    route_to_premium,
    walk,
)

PRICE_XTR = 50
CHARGE_ID = "stxE2E-charge-0001"


async def buy(deployment: Deployment, telegram_id: int = USER_B) -> dict[str, Any]:
    answer = await deployment.deliver(text_update("/buy", user_id=telegram_id))
    assert answer is not None
    return answer


async def pre_checkout(
    deployment: Deployment, *, payload: str, amount: int, telegram_id: int = USER_B
) -> dict[str, Any]:
    update = pre_checkout_query_update(user_id=telegram_id, payload=payload, amount=amount)
    answer = await deployment.deliver(update)
    assert answer is not None
    assert answer["method"] == "answerPreCheckoutQuery"
    assert answer["pre_checkout_query_id"] == update["pre_checkout_query"]["id"]
    return answer


async def payments(deployment: Deployment) -> list[tuple[Any, ...]]:
    return await deployment.rows(
        "SELECT user_id, amount, currency, invoice_payload, telegram_payment_charge_id, status"
        " FROM app__payments ORDER BY id"
    )


async def premium(deployment: Deployment, telegram_id: int = USER_B) -> bool:
    user = await deployment.user_row_id(telegram_id)
    value = await deployment.scalar(
        "SELECT premium FROM app__novel_states WHERE user_id = :u", u=user
    )
    return bool(value)


async def test_buy_pre_checkout_and_pay_once(deployment: Deployment, story: Story) -> None:
    # B walks to the door of the premium branch; it is closed.
    route = route_to_premium(story)
    await walk(deployment, story, steps=len(route), route=list(route))
    door = story.scene(await current_scene(deployment))
    premium_choice = next(c for c in door.choices if story.scene(c.target).premium)
    refused = await press(deployment, premium_choice.id)
    assert refused["show_alert"] is True

    # /buy: an invoice in Telegram Stars, as the webhook answer.
    invoice = await buy(deployment)
    assert invoice["method"] == "sendInvoice"
    assert invoice["chat_id"] == USER_B
    assert invoice["currency"] == "XTR"
    assert [price["amount"] for price in invoice["prices"]] == [PRICE_XTR]
    assert invoice["title"]
    assert invoice["description"]
    payload = invoice["payload"]
    assert payload
    # Stars invoices carry no provider token (or an empty one).
    assert not invoice.get("provider_token")

    # pre_checkout_query: the right payload and amount -> ok.
    answer = await pre_checkout(deployment, payload=payload, amount=PRICE_XTR)
    assert answer["ok"] is True
    assert "error_message" not in answer
    # A wrong amount, or a payload we never issued -> refused, with a reason for the user.
    for wrong in ({"payload": payload, "amount": PRICE_XTR - 1}, {"payload": "x", "amount": 50}):
        answer = await pre_checkout(deployment, **wrong)
        assert answer["ok"] is False
        assert answer["error_message"]
    # Somebody who never sent /start is refused too.
    answer = await pre_checkout(deployment, payload=payload, amount=PRICE_XTR, telegram_id=999)
    assert answer["ok"] is False
    assert "/start" in answer["error_message"]
    assert await payments(deployment) == []
    assert not await premium(deployment)

    # successful_payment: one Payment, premium unlocked, and a thank-you, which comes
    # through the outbox (committed with the payment), not as the webhook's answer.
    paid = successful_payment_update(
        user_id=USER_B, payload=payload, amount=PRICE_XTR, currency="XTR", charge_id=CHARGE_ID
    )
    deployment.telegram.clear()
    assert await deployment.deliver(paid) is None
    [thanks] = await deployment.sent("sendMessage")
    assert thanks.params["chat_id"] == USER_B
    assert "unlocked" in thanks.params["text"]
    b = await deployment.user_row_id(USER_B)
    expected = [(b, PRICE_XTR, "XTR", payload, CHARGE_ID, "paid")]
    assert await payments(deployment) == expected
    assert await premium(deployment)
    before = await deployment.snapshot()

    # The same update again (Telegram's retry: same update_id): db_manager's dedup skips it.
    assert await deployment.deliver(paid) is None
    # The same payment in a new update (new update_id, same charge id): the service's
    # idempotency makes it one payment, and no second thank-you.
    again = successful_payment_update(
        update_id=next_update_id(),
        user_id=USER_B,
        payload=payload,
        amount=PRICE_XTR,
        charge_id=CHARGE_ID,
    )
    assert again["update_id"] != paid["update_id"]
    assert await deployment.deliver(again) is None
    assert await payments(deployment) == expected
    assert await deployment.snapshot() == before
    assert [row for row in await deployment.settled() if row[0] == "sendMessage"] == [
        ("sendMessage", "sent", USER_B)
    ]
    assert len(deployment.telegram.calls("sendMessage")) == 1
    assert (
        await deployment.scalar(
            "SELECT count(*) FROM db_manager__telegram_updates WHERE update_id IN (:a, :b)",
            a=paid["update_id"],
            b=again["update_id"],
        )
        == 2
    )

    # The API shows it; the premium door opens; a second /buy is declined.
    profile = await deployment.api_json(f"/api/users/{USER_B}")
    assert profile["premium"] is True
    listed = await deployment.api_json(f"/api/users/{USER_B}/payments")
    assert [(p["amount"], p["currency"], p["telegram_payment_charge_id"]) for p in listed] == [
        (PRICE_XTR, "XTR", CHARGE_ID)
    ]
    deployment.telegram.clear()
    opened = await press(deployment, premium_choice.id)
    assert "text" not in opened
    await deployment.sent("editMessageText")
    assert deployment.telegram.method_names == ["editMessageText"]
    assert await current_scene(deployment) == premium_choice.target
    second = await buy(deployment)
    assert second["method"] == "sendMessage"
    assert "already" in second["text"]


async def test_buy_before_start_is_explained(deployment: Deployment) -> None:
    answer = await buy(deployment, USER_A)
    assert answer["method"] == "sendMessage"
    assert "/start" in answer["text"]
    await deployment.deliver(start_update(user_id=USER_A))
    assert (await buy(deployment, USER_A))["method"] == "sendInvoice"
    assert await deployment.scalar("SELECT count(*) FROM app__payments") == 0


async def test_one_payment_delivered_twice_at_once_is_recorded_once(
    deployment: Deployment,
) -> None:
    await deployment.deliver(start_update(user_id=USER_B))
    invoice = await buy(deployment)
    # Two deliveries of one charge racing (e.g. on two workers): one row, one thank-you.
    updates = [
        successful_payment_update(
            user_id=USER_B,
            payload=invoice["payload"],
            amount=PRICE_XTR,
            charge_id=CHARGE_ID,
        )
        for _ in range(2)
    ]
    deployment.telegram.clear()
    answers = await asyncio.gather(*(deployment.deliver(update) for update in updates))
    assert answers == [None, None]  # the thank-you leaves through the outbox
    assert len(await payments(deployment)) == 1
    assert [row for row in await deployment.settled() if row[0] == "sendMessage"] == [
        ("sendMessage", "sent", USER_B)
    ]
    assert len(deployment.telegram.calls("sendMessage")) == 1
    assert await premium(deployment)
    stats = await deployment.api_json("/api/stats")
    assert (stats["payments"], stats["payments_sum"]) == (1, PRICE_XTR)
