"""Builders of real Telegram update JSON: dicts exactly as the Bot API posts them to a webhook.

Every builder takes the ids it needs as keywords (``update_id``, ``user_id``, ``chat_id``,
``message_id``, ...) with defaults that make a consistent private chat, so a test writes
only what it cares about::

    body = start_update(update_id=7, user_id=42, code="ref-abc")
    await client.post("/webhook/telegram", json=body, headers=secret_header())

The JSON uses Telegram's own keys (``from``, not ``from_user``) and leaves out absent fields
instead of sending ``null``, so aiogram parses it as it parses production traffic.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, overload

__all__ = [
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USERNAME",
    "CHAT_ID",
    "DATE",
    "GROUP_CHAT_ID",
    "USER_ID",
    "WEBHOOK_SECRET",
    "bot_user",
    "callback_query_update",
    "chat_join_request_update",
    "command_entities",
    "edited_message_update",
    "encode",
    "group_chat",
    "message",
    "message_update",
    "next_update_id",
    "poll_update",
    "pre_checkout_query_update",
    "private_chat",
    "secret_header",
    "start_update",
    "successful_payment_update",
    "text_update",
    "user",
]

BOT_ID = 123456
BOT_TOKEN = f"{BOT_ID}:TEST"
BOT_USERNAME = "test_bot"
WEBHOOK_SECRET = "s3cret_token-1"
USER_ID = 1001
CHAT_ID = USER_ID  # a private chat's id is the user's id
GROUP_CHAT_ID = -1001234567890
DATE = 1_735_689_600  # 2025-01-01T00:00:00Z

_update_ids = itertools.count(500_000_001)
_message_ids = itertools.count(1)


def next_update_id() -> int:
    """A fresh, increasing update id (Telegram's are sequential per bot)."""
    return next(_update_ids)


@overload
def secret_header(secret: str = WEBHOOK_SECRET) -> dict[str, str]: ...
@overload
def secret_header(secret: bytes) -> dict[str, bytes]: ...
def secret_header(secret: str | bytes = WEBHOOK_SECRET) -> dict[str, str] | dict[str, bytes]:
    """The header Telegram sends with every webhook request (bytes: sent as they are)."""
    if isinstance(secret, bytes):
        return {"X-Telegram-Bot-Api-Secret-Token": secret}
    return {"X-Telegram-Bot-Api-Secret-Token": secret}


def encode(update: dict[str, Any]) -> bytes:
    """The body bytes, compact as Telegram sends them."""
    return json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()


# -- objects -----------------------------------------------------------------------------------


def user(
    user_id: int = USER_ID,
    *,
    first_name: str = "Ada",
    last_name: str | None = None,
    username: str | None = "ada",
    language_code: str | None = "en",
    is_premium: bool | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name is not None:
        data["last_name"] = last_name
    if username is not None:
        data["username"] = username
    if language_code is not None:
        data["language_code"] = language_code
    if is_premium is not None:
        data["is_premium"] = is_premium
    return data


def bot_user(bot_id: int = BOT_ID, *, username: str = BOT_USERNAME) -> dict[str, Any]:
    return {"id": bot_id, "is_bot": True, "first_name": "Test Bot", "username": username}


def private_chat(
    chat_id: int = CHAT_ID, *, first_name: str = "Ada", username: str | None = "ada"
) -> dict[str, Any]:
    data: dict[str, Any] = {"id": chat_id, "first_name": first_name, "type": "private"}
    if username is not None:
        data["username"] = username
    return data


def group_chat(chat_id: int = GROUP_CHAT_ID, *, title: str = "Test group") -> dict[str, Any]:
    return {"id": chat_id, "title": title, "type": "supergroup"}


def command_entities(text: str) -> list[dict[str, Any]]:
    """The ``bot_command`` entity Telegram adds when ``text`` starts with ``/command``."""
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    return [{"offset": 0, "length": len(command), "type": "bot_command"}]


def message(
    text: str | None = None,
    *,
    message_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int | None = None,
    date: int = DATE,
    first_name: str = "Ada",
    username: str | None = "ada",
    entities: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Message object sent by the user ``user_id`` in their private chat (or ``chat_id``)."""
    chat_id = user_id if chat_id is None else chat_id
    chat = (
        private_chat(chat_id, first_name=first_name, username=username)
        if chat_id > 0
        else group_chat(chat_id)
    )
    data: dict[str, Any] = {
        "message_id": next(_message_ids) if message_id is None else message_id,
        "from": user(user_id, first_name=first_name, username=username),
        "chat": chat,
        "date": date,
    }
    if text is not None:
        data["text"] = text
        found = command_entities(text) if entities is None else entities
        if found:
            data["entities"] = found
    data.update(extra)
    return data


# -- updates -----------------------------------------------------------------------------------


def _update_id(update_id: int | None) -> int:
    return next_update_id() if update_id is None else update_id


def message_update(
    text: str = "hello",
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int | None = None,
    message_id: int | None = None,
    date: int = DATE,
    first_name: str = "Ada",
    username: str | None = "ada",
) -> dict[str, Any]:
    """A ``message`` update carrying ``text`` (commands get their ``bot_command`` entity)."""
    return {
        "update_id": _update_id(update_id),
        "message": message(
            text,
            message_id=message_id,
            user_id=user_id,
            chat_id=chat_id,
            date=date,
            first_name=first_name,
            username=username,
        ),
    }


text_update = message_update


def start_update(
    code: str | None = None,
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int | None = None,
    message_id: int | None = None,
    date: int = DATE,
    first_name: str = "Ada",
    username: str | None = "ada",
) -> dict[str, Any]:
    """``/start`` or, with ``code``, the deep link ``/start <code>``."""
    text = "/start" if code is None else f"/start {code}"
    return message_update(
        text,
        update_id=update_id,
        user_id=user_id,
        chat_id=chat_id,
        message_id=message_id,
        date=date,
        first_name=first_name,
        username=username,
    )


def edited_message_update(
    text: str = "hello, edited",
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int | None = None,
    message_id: int = 1,
    date: int = DATE,
    edit_date: int = DATE + 60,
) -> dict[str, Any]:
    """An ``edited_message`` update: the message ``message_id`` now reads ``text``."""
    return {
        "update_id": _update_id(update_id),
        "edited_message": message(
            text,
            message_id=message_id,
            user_id=user_id,
            chat_id=chat_id,
            date=date,
            edit_date=edit_date,
        ),
    }


def callback_query_update(
    data: str = "button:1",
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int | None = None,
    message_id: int = 2,
    query_id: str | None = None,
    message_text: str = "Choose:",
    bot_id: int = BOT_ID,
    date: int = DATE,
) -> dict[str, Any]:
    """A button press on a message the bot sent (the message carries its inline keyboard)."""
    chat_id = user_id if chat_id is None else chat_id
    update_id = _update_id(update_id)
    bot_message: dict[str, Any] = {
        "message_id": message_id,
        "from": bot_user(bot_id),
        "chat": private_chat(chat_id) if chat_id > 0 else group_chat(chat_id),
        "date": date,
        "text": message_text,
        "reply_markup": {"inline_keyboard": [[{"text": "Press", "callback_data": data}]]},
    }
    return {
        "update_id": update_id,
        "callback_query": {
            "id": query_id if query_id is not None else f"{user_id}{update_id}",
            "from": user(user_id),
            "message": bot_message,
            "chat_instance": f"-{abs(chat_id) * 7919}",
            "data": data,
        },
    }


def pre_checkout_query_update(
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    payload: str = "invoice-payload",
    amount: int = 100,
    currency: str = "XTR",
    query_id: str | None = None,
) -> dict[str, Any]:
    """Telegram asks the bot to confirm a payment (Stars: currency ``XTR``)."""
    update_id = _update_id(update_id)
    return {
        "update_id": update_id,
        "pre_checkout_query": {
            "id": query_id if query_id is not None else f"pcq-{update_id}",
            "from": user(user_id),
            "currency": currency,
            "total_amount": amount,
            "invoice_payload": payload,
        },
    }


def successful_payment_update(
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int | None = None,
    message_id: int | None = None,
    payload: str = "invoice-payload",
    amount: int = 100,
    currency: str = "XTR",
    charge_id: str = "stxCHARGE0001",
    provider_charge_id: str = "",
    date: int = DATE,
) -> dict[str, Any]:
    """A service message in the user's chat: the payment went through."""
    return {
        "update_id": _update_id(update_id),
        "message": message(
            None,
            message_id=message_id,
            user_id=user_id,
            chat_id=chat_id,
            date=date,
            successful_payment={
                "currency": currency,
                "total_amount": amount,
                "invoice_payload": payload,
                "telegram_payment_charge_id": charge_id,
                "provider_payment_charge_id": provider_charge_id,
            },
        ),
    }


def chat_join_request_update(
    *,
    update_id: int | None = None,
    user_id: int = USER_ID,
    chat_id: int = GROUP_CHAT_ID,
    date: int = DATE,
) -> dict[str, Any]:
    """A user asks to join a group that needs approval."""
    return {
        "update_id": _update_id(update_id),
        "chat_join_request": {
            "chat": group_chat(chat_id),
            "from": user(user_id),
            "user_chat_id": user_id,
            "date": date,
        },
    }


def poll_update(
    *,
    update_id: int | None = None,
    poll_id: str = "5000000000000000001",
    question: str = "Tea or coffee?",
    options: tuple[str, ...] = ("Tea", "Coffee"),
) -> dict[str, Any]:
    """A poll's new state (sent for polls the bot created)."""
    return {
        "update_id": _update_id(update_id),
        "poll": {
            "id": poll_id,
            "question": question,
            "options": [
                {"persistent_id": str(index), "text": option, "voter_count": 0}
                for index, option in enumerate(options)
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,
            "members_only": False,
        },
    }
