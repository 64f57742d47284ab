"""The test doubles are worth what they imitate: the update builders parse as aiogram parses
Telegram's traffic, and the recording session answers like the Bot API. No database here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    Update,
    User,
)

from tests.support.telegram import RecordingSession
from tests.support.updates import (
    BOT_ID,
    BOT_TOKEN,
    GROUP_CHAT_ID,
    callback_query_update,
    chat_join_request_update,
    edited_message_update,
    encode,
    message_update,
    poll_update,
    pre_checkout_query_update,
    start_update,
    successful_payment_update,
)


@pytest.mark.parametrize(
    ("update", "event_type"),
    [
        pytest.param(start_update(update_id=1), "message", id="start"),
        pytest.param(start_update("ref-1", update_id=2), "message", id="start-code"),
        pytest.param(message_update("hi", update_id=3), "message", id="text"),
        pytest.param(callback_query_update("a:b", update_id=4), "callback_query", id="callback"),
        pytest.param(
            pre_checkout_query_update(update_id=5), "pre_checkout_query", id="pre-checkout"
        ),
        pytest.param(successful_payment_update(update_id=6), "message", id="payment"),
        pytest.param(edited_message_update(update_id=7), "edited_message", id="edited"),
        pytest.param(chat_join_request_update(update_id=8), "chat_join_request", id="join"),
        pytest.param(poll_update(update_id=9), "poll", id="poll"),
    ],
)
def test_every_builder_makes_an_update_aiogram_parses(
    update: dict[str, Any], event_type: str
) -> None:
    parsed = Update.model_validate_json(encode(update))
    assert parsed.event_type == event_type
    assert parsed.update_id == update["update_id"]
    assert "from_user" not in encode(update).decode()  # Telegram's key is "from"


def test_builders_take_the_ids_a_test_cares_about() -> None:
    start = Update.model_validate(start_update("abc", update_id=77, user_id=5, first_name="Bo"))
    assert start.message is not None and start.message.from_user is not None
    assert (start.update_id, start.message.from_user.id, start.message.chat.id) == (77, 5, 5)
    assert start.message.text == "/start abc"
    assert start.message.entities is not None
    assert (start.message.entities[0].type, start.message.entities[0].length) == (
        "bot_command",
        6,
    )

    paid = Update.model_validate(
        successful_payment_update(update_id=78, payload="p1", amount=250, charge_id="ch-9")
    )
    assert paid.message is not None and paid.message.successful_payment is not None
    payment = paid.message.successful_payment
    assert (payment.currency, payment.total_amount, payment.invoice_payload) == ("XTR", 250, "p1")
    assert payment.telegram_payment_charge_id == "ch-9"

    query = Update.model_validate(pre_checkout_query_update(update_id=79, amount=3, payload="x"))
    assert query.pre_checkout_query is not None
    assert (query.pre_checkout_query.currency, query.pre_checkout_query.total_amount) == ("XTR", 3)

    press = Update.model_validate(callback_query_update("go", update_id=80, user_id=6))
    assert press.callback_query is not None and isinstance(press.callback_query.message, Message)
    assert press.callback_query.data == "go"
    assert press.callback_query.message.chat.id == 6

    join = Update.model_validate(chat_join_request_update(update_id=81))
    assert join.chat_join_request is not None
    assert join.chat_join_request.chat.id == GROUP_CHAT_ID


def test_update_ids_are_fresh_when_not_given() -> None:
    assert message_update()["update_id"] != message_update()["update_id"]


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    session = RecordingSession()
    bot = Bot(BOT_TOKEN, session=session)
    async with bot:
        yield bot
    assert session.closed


def recorder(bot: Bot) -> RecordingSession:
    assert isinstance(bot.session, RecordingSession)
    return bot.session


async def test_the_session_records_calls_and_answers_with_aiogram_objects(bot: Bot) -> None:
    me = await bot.get_me()
    assert isinstance(me, User) and me.id == BOT_ID and me.is_bot

    sent = await bot.send_message(
        chat_id=42,
        text="hi",
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Go", callback_data="go")]]
        ),
    )
    assert isinstance(sent, Message)
    assert (sent.chat.id, sent.text) == (42, "hi")
    assert sent.bot is bot  # bound, so shortcuts like sent.answer(...) work

    assert await bot.answer_callback_query("cbq-1", text="ok") is True
    assert await bot.answer_pre_checkout_query("pcq-1", ok=True) is True
    assert await bot.set_webhook("https://example.com/hook", secret_token="s") is True

    edited = await bot.edit_message_text(text="new", chat_id=42, message_id=sent.message_id)
    assert isinstance(edited, Message) and edited.text == "new"
    assert edited.message_id == sent.message_id

    invoice = await bot.send_invoice(
        chat_id=42,
        title="Chapter 2",
        description="The next chapter",
        payload="chapter-2",
        currency="XTR",
        prices=[LabeledPrice(label="Chapter 2", amount=50)],
    )
    assert invoice.invoice is not None and invoice.invoice.total_amount == 50

    document = await bot.send_document(42, BufferedInputFile(b"data", filename="a.txt"))
    assert document.document is not None

    session = recorder(bot)
    assert session.method_names == [
        "getMe",
        "sendMessage",
        "answerCallbackQuery",
        "answerPreCheckoutQuery",
        "setWebhook",
        "editMessageText",
        "sendInvoice",
        "sendDocument",
    ]
    assert session.calls("sendMessage")[0].params == {
        "chat_id": 42,
        "text": "hi",
        "reply_markup": {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]},
    }
    assert isinstance(session.calls("sendMessage")[0].method, SendMessage)
    [attached] = session.last("sendDocument").files.values()
    assert attached.filename == "a.txt"


async def test_the_session_can_answer_otherwise_or_fail_like_telegram(bot: Bot) -> None:
    session = recorder(bot)
    session.fail("sendMessage", description="Bad Request: chat not found")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(chat_id=1, text="x")

    session.fail("sendMessage", status_code=429, parameters={"retry_after": 3})
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(chat_id=1, text="x")
    assert raised.value.retry_after == 3

    session.set_result("answerCallbackQuery", False)
    assert await bot.answer_callback_query("q") is False
    assert len(session.calls("sendMessage")) == 2


async def test_the_session_streams_configured_content() -> None:
    session = RecordingSession(stream_chunks=(b"ab", b"cd"))
    bot = Bot(BOT_TOKEN, session=session)
    try:
        chunks = [chunk async for chunk in session.stream_content("https://example.com/f")]
        assert chunks == [b"ab", b"cd"]
        assert session.streamed_urls == ["https://example.com/f"]
    finally:
        await bot.session.close()
    assert session.close_calls == 1
