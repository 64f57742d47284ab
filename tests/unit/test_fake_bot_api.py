"""The fake Bot API server answers aiogram's real session as Telegram does, and records."""

# The imported fixture is named by the tests' parameters, which ruff reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import SecretStr

from db_manager.telegram import TelegramSettings, build_bot
from tests.support.fake_bot_api import (
    Call,
    FakeBotApi,
    fake_bot_api,  # noqa: F401
    max_per_window,
    min_gap_per_chat,
)

TOKEN = "123456:TEST-token_abc"


@pytest.fixture
async def bot(fake_bot_api: FakeBotApi) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake_bot_api.base_url))
    bot = Bot(TOKEN, session=session)
    yield bot
    await bot.session.close()


async def test_get_me_answers_the_bot_of_the_token(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.username == "test_bot"
    assert me.is_bot
    [call] = fake_bot_api.calls
    assert call.method == "getMe"
    assert call.token_bot_id == 123456
    assert call.ok


async def test_send_message_returns_a_message_in_the_chat(
    bot: Bot, fake_bot_api: FakeBotApi
) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="go", callback_data="go:1")]]
    )
    first = await bot.send_message(chat_id=42, text="hello", reply_markup=markup)
    second = await bot.send_message(chat_id=42, text="42")
    group = await bot.send_message(chat_id=-1001234, text="all")
    assert first.chat.id == 42
    assert first.chat.type == "private"
    assert first.text == "hello"
    assert first.reply_markup is not None
    assert first.reply_markup.inline_keyboard[0][0].callback_data == "go:1"
    assert second.message_id == first.message_id + 1
    assert group.chat.type == "supergroup"
    assert fake_bot_api.sent_texts(chat_id=42) == ["hello", "42"]
    sent = fake_bot_api.calls_of("sendMessage")
    assert sent[0].params["chat_id"] == 42
    assert sent[0].chat_id == 42
    assert sent[0].params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "go:1"
    assert sent[1].params["text"] == "42"  # a text that looks like JSON stays a string


async def test_edit_message_text_returns_the_edited_message(
    bot: Bot, fake_bot_api: FakeBotApi
) -> None:
    sent = await bot.send_message(chat_id=7, text="before")
    edited = await bot.edit_message_text(chat_id=7, message_id=sent.message_id, text="after")
    assert not isinstance(edited, bool)
    assert edited.message_id == sent.message_id
    assert edited.text == "after"
    assert edited.edit_date is not None
    [call] = fake_bot_api.calls_of("editMessageText")
    assert call.params == {"chat_id": 7, "message_id": sent.message_id, "text": "after"}


async def test_set_webhook_is_recorded_and_reported(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    assert await bot.set_webhook(
        url="https://example.org/webhook",
        secret_token="s3cret",
        allowed_updates=["message", "callback_query"],
    )
    [call] = fake_bot_api.calls_of("setWebhook")
    assert call.params["url"] == "https://example.org/webhook"
    assert call.params["secret_token"] == "s3cret"
    assert call.params["allowed_updates"] == ["message", "callback_query"]
    info = await bot.get_webhook_info()
    assert info.url == "https://example.org/webhook"
    assert info.allowed_updates == ["message", "callback_query"]
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_429_raises_retry_after_with_telegrams_body(
    bot: Bot, fake_bot_api: FakeBotApi
) -> None:
    fake_bot_api.fail(method="sendMessage", chat_id=42, status=429, retry_after=3, times=1)
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(chat_id=42, text="x")
    assert raised.value.retry_after == 3
    assert "Too Many Requests: retry after 3" in str(raised.value)
    await bot.send_message(chat_id=42, text="x")  # times=1: the next one goes through
    assert [call.status for call in fake_bot_api.calls] == [429, 200]
    assert len(fake_bot_api.delivered("sendMessage")) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TelegramServerError),
        (502, TelegramServerError),
        (400, TelegramBadRequest),
        (403, TelegramForbiddenError),
    ],
)
async def test_failures_raise_aiograms_errors(
    bot: Bot, fake_bot_api: FakeBotApi, status: int, error: type[Exception]
) -> None:
    fake_bot_api.fail(method="sendMessage", status=status, times=None)
    with pytest.raises(error):
        await bot.send_message(chat_id=1, text="x")
    with pytest.raises(error):  # until cleared
        await bot.send_message(chat_id=2, text="x")
    fake_bot_api.clear_failures()
    await bot.send_message(chat_id=3, text="x")
    assert [call.status for call in fake_bot_api.calls] == [status, status, 200]
    assert fake_bot_api.sent_texts() == ["x"]


async def test_default_descriptions_are_telegrams(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.fail(chat_id=5, status=403)  # once by default
    fake_bot_api.fail(chat_id=6, status=400)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(chat_id=5, text="x")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(chat_id=6, text="x")
    await bot.send_message(chat_id=5, text="y")
    assert fake_bot_api.sent_texts() == ["y"]


async def test_drop_raises_network_error(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.drop(method="sendMessage", chat_id=9, times=2)
    for _ in range(2):
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(chat_id=9, text="x")
    await bot.send_message(chat_id=9, text="x")
    assert [call.status for call in fake_bot_api.calls] == [None, None, 200]
    assert fake_bot_api.calls[0].dropped


async def test_failures_per_chat_affect_only_that_chat(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.fail(method="sendMessage", chat_id=42, status=500, times=2)
    with pytest.raises(TelegramServerError):
        await bot.send_message(chat_id=42, text="a")
    await bot.send_message(chat_id=43, text="b")
    await bot.send_chat_action(chat_id=42, action="typing")  # another method
    with pytest.raises(TelegramServerError):
        await bot.send_message(chat_id=42, text="c")
    await bot.send_message(chat_id=42, text="d")
    assert fake_bot_api.sent_texts() == ["b", "d"]
    assert len(fake_bot_api.calls_of("sendMessage", chat_id=42)) == 3


async def test_calls_are_recorded_with_timestamps(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    before, wall_before = time.monotonic(), time.time()
    await bot.send_message(chat_id=1, text="one")
    await bot.answer_callback_query("cb-1", text="ok")
    after = time.monotonic()
    first, second = await fake_bot_api.wait_calls(2)
    assert before <= first.at <= second.at <= after
    assert wall_before <= first.wall <= time.time()
    assert second.method == "answerCallbackQuery"
    assert second.params == {"callback_query_id": "cb-1", "text": "ok"}
    fake_bot_api.clear()
    assert fake_bot_api.calls == []


async def test_wait_calls_times_out_with_what_arrived(fake_bot_api: FakeBotApi) -> None:
    with pytest.raises(AssertionError, match="expected 1 sendMessage"):
        await fake_bot_api.wait_calls(1, method="sendMessage", timeout=0.05)


async def test_latency_delays_the_answer(bot: Bot, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.latency = 0.2
    started = time.monotonic()
    await bot.send_message(chat_id=1, text="slow")
    assert time.monotonic() - started >= 0.2


async def test_unknown_token_format_is_404(fake_bot_api: FakeBotApi) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{fake_bot_api.base_url}/botnot-a-token/getMe") as response,
    ):
        assert response.status == 404
        assert await response.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found",
        }


def test_sync_use_and_wait_for_calls() -> None:
    import urllib.request

    with FakeBotApi() as fake:
        url = f"{fake.base_url}/bot{TOKEN}/sendMessage"
        data = b"chat_id=-5&text=hi"
        with urllib.request.urlopen(url, data=data, timeout=5) as response:  # noqa: S310
            assert response.status == 200
        [call] = fake.wait_for_calls(1, method="sendMessage", timeout=5)
        assert call.params == {"chat_id": -5, "text": "hi"}
    with pytest.raises(RuntimeError):
        fake.start()


async def test_build_bot_reaches_the_fake(fake_bot_api: FakeBotApi) -> None:
    settings = TelegramSettings(
        token=SecretStr(TOKEN),
        webhook_secret=SecretStr("hook-secret"),
        api_server=fake_bot_api.base_url,
    )
    bot = build_bot(settings)
    try:
        await bot.send_message(chat_id=77, text="via settings")
    finally:
        await bot.session.close()
    assert fake_bot_api.sent_texts(chat_id=77) == ["via settings"]
    assert fake_bot_api.calls[0].token_bot_id == 123456


def _call(at: float, chat_id: int, status: int | None = 200) -> Call:
    return Call("sendMessage", {}, 1, at, at, chat_id, status)


def test_flood_checks() -> None:
    calls = [_call(0.0, 1), _call(0.5, 2), _call(0.99, 1), _call(1.0, 1), _call(1.2, 2, 429)]
    assert max_per_window(calls, 1.0) == 3  # 0.0, 0.5, 0.99; 1.0 is outside [0, 1)
    assert max_per_window(calls, 1.0, key="chat_id") == 2
    assert max_per_window(calls, 2.0) == 4  # the 429 is not counted
    assert min_gap_per_chat(calls) == pytest.approx(0.01)
    assert min_gap_per_chat([_call(0.0, 1)]) == float("inf")
