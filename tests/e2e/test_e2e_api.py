"""Acceptance 4: /api/* needs the Bearer token; /api/stats matches the database; API off."""

from __future__ import annotations

from db_manager import DatabaseSettings
from tests.support.updates import start_update, successful_payment_update, text_update

from .e2e_support import (
    API_TOKEN,
    LINK_PATTERN,
    USER_A,
    USER_B,
    Deployment,
    deployed,
)

USER_C = 7_000_003
API_PATHS = (
    "/api/stats",
    f"/api/users/{USER_A}",
    f"/api/users/{USER_A}/payments",
    "/api/users/1/payments",  # unknown user: still 401 first, nothing is revealed
)


async def populate(deployment: Deployment) -> None:
    """A; B and C through A's link; D without one; two payments of B and C."""
    await deployment.deliver(start_update(user_id=USER_A))
    answer = await deployment.deliver(text_update("/ref", user_id=USER_A))
    assert answer is not None
    found = LINK_PATTERN.search(answer["text"])
    assert found is not None
    for user in (USER_B, USER_C):
        await deployment.deliver(start_update(found["code"], user_id=user))
    await deployment.deliver(start_update(user_id=7_000_004))
    for number, user in enumerate((USER_B, USER_C)):
        await deployment.deliver(
            successful_payment_update(
                user_id=user, payload="premium_unlock", amount=50, charge_id=f"stx-{number}"
            )
        )


async def test_api_without_or_with_a_wrong_token_is_401(deployment: Deployment) -> None:
    await deployment.deliver(start_update(user_id=USER_A))
    headers_cases: list[dict[str, str] | dict[bytes, bytes]] = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {API_TOKEN}x"},
        {"Authorization": f"Bearer {API_TOKEN[:-1]}"},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": API_TOKEN},
        {"Authorization": "Bearer "},
        {b"Authorization": "Bearer ünïcode".encode()},
        {b"Authorization": b"Bearer \xff\xfe"},
    ]
    for path in API_PATHS:
        for headers in headers_cases:
            response = await deployment.client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "Bearer" in response.json()["detail"]
            assert str(USER_A) not in response.text
        assert (await deployment.api(path)).status_code in (200, 404)


async def test_api_with_the_token_and_stats_match_the_database(deployment: Deployment) -> None:
    await populate(deployment)
    stats = await deployment.api_json("/api/stats")

    # Counted directly in the tables, not through the app's repositories.
    users = await deployment.scalar("SELECT count(*) FROM app__users")
    referred = await deployment.scalar(
        "SELECT count(*) FROM app__users WHERE referrer_id IS NOT NULL"
    )
    paid = await deployment.scalar("SELECT count(*) FROM app__payments WHERE status = 'paid'")
    paid_sum = await deployment.scalar(
        "SELECT coalesce(sum(amount), 0) FROM app__payments WHERE status = 'paid'"
    )
    assert stats == {
        "users": users,
        "referrals": referred,
        "payments": paid,
        "payments_sum": paid_sum,
    }
    assert (users, referred, paid, paid_sum) == (4, 2, 2, 100)

    # The user views agree with the tables too; unknown users are 404.
    profile = await deployment.api_json(f"/api/users/{USER_A}")
    assert profile["referral_count"] == 2
    assert profile["premium"] is False
    assert (await deployment.api_json(f"/api/users/{USER_C}"))["premium"] is True
    assert len(await deployment.api_json(f"/api/users/{USER_B}/payments")) == 1
    for path in ("/api/users/1", "/api/users/1/payments"):
        response = await deployment.api(path)
        assert response.status_code == 404
        assert "No user" in response.json()["detail"]


async def test_api_refuses_ids_that_are_no_telegram_ids(deployment: Deployment) -> None:
    # Beyond BIGINT an id cannot even be bound as a parameter: that was a 500 (database_error).
    for bad in ("0", "-5", str(2**63), "9" * 30, "abc"):
        for suffix in ("", "/payments"):
            path = f"/api/users/{bad}{suffix}"
            response = await deployment.api(path)
            assert response.status_code == 422, (path, response.text)
            # Without the token it is still a 401: nothing is validated for strangers.
            assert (await deployment.api(path, token=None)).status_code == 401
    assert (await deployment.api(f"/api/users/{2**63 - 1}")).status_code == 404


async def test_api_is_off_without_a_token_and_health_stays_open(
    db_settings: DatabaseSettings,
) -> None:
    async with deployed(db_settings, api_token=None) as deployment:
        for path in API_PATHS:
            for token in (None, API_TOKEN, ""):
                response = await deployment.api(path, token=token)
                assert response.status_code == 503, (path, token, response.text)
                assert "API is off" in response.json()["detail"]
        for path in ("/health/live", "/health/ready"):
            response = await deployment.client.get(path)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "ok"
        # The bot works without the API.
        answer = await deployment.deliver(start_update(user_id=USER_A))
        assert answer is not None
        assert answer["method"] == "sendMessage"


async def test_health_needs_no_token(deployment: Deployment) -> None:
    for path in ("/health/live", "/health/ready"):
        response = await deployment.client.get(path)
        assert response.status_code == 200, response.text
