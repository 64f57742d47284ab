"""A Bot API session that records every outgoing call instead of talking to Telegram.

::

    session = RecordingSession()
    bot = Bot("123456:TEST", session=session)          # or telegram_lifespan(..., session=session)
    await bot.send_message(chat_id=1, text="hi")
    assert session.method_names == ["sendMessage"]
    assert session.last("sendMessage").params == {"chat_id": 1, "text": "hi"}

Each call is answered with a plausible result built from the method's ``__returning__``
type (a ``Message`` for ``sendMessage``, ``True`` for ``answerCallbackQuery``, the bot's
``User`` for ``getMe`` ...) and parsed by aiogram's own ``check_response``, so handlers get
real aiogram objects bound to the bot. Override a result, or make a method fail the way
Telegram would, with :meth:`RecordingSession.set_result` / :meth:`RecordingSession.fail`.
"""

from __future__ import annotations

import itertools
import json
import time
import types
import typing
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import (
    BotCommand,
    ChatFullInfo,
    File,
    InputFile,
    Message,
    MessageId,
    User,
    WebhookInfo,
)

if TYPE_CHECKING:
    from aiogram import Bot

__all__ = ["RecordedRequest", "RecordingSession"]

ResultFactory = Callable[["Bot", TelegramMethod[Any], dict[str, Any]], Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One outgoing call: the API name, the method object and its parameters as sent."""

    name: str
    method: TelegramMethod[Any]
    params: dict[str, Any]
    files: dict[str, InputFile] = field(default_factory=dict)


@dataclass(frozen=True)
class _Failure:
    status_code: int
    description: str
    parameters: dict[str, Any] | None


class RecordingSession(BaseSession):
    """Records calls; answers them like Telegram would; never opens a socket."""

    def __init__(
        self,
        *,
        bot_username: str = "test_bot",
        bot_first_name: str = "Test Bot",
        stream_chunks: tuple[bytes, ...] = (b"",),
    ) -> None:
        super().__init__()
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.stream_chunks = stream_chunks
        self.requests: list[RecordedRequest] = []
        self.streamed_urls: list[str] = []
        self.close_calls = 0
        self._results: dict[str, Any] = {}
        self._message_ids = itertools.count(10_000)

    # -- what a test looks at ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.close_calls > 0

    @property
    def method_names(self) -> list[str]:
        return [request.name for request in self.requests]

    def calls(self, name: str) -> list[RecordedRequest]:
        """The recorded calls of one API method (``"sendMessage"``), oldest first."""
        return [request for request in self.requests if request.name == name]

    def last(self, name: str | None = None) -> RecordedRequest:
        matching = self.requests if name is None else self.calls(name)
        if not matching:
            raise AssertionError(
                f"no {name or 'Bot API'} call was recorded; got {self.method_names}"
            )
        return matching[-1]

    def clear(self) -> None:
        self.requests.clear()

    # -- how a test steers it ------------------------------------------------------------------

    def set_result(self, name: str, result: Any | ResultFactory) -> None:
        """Answer ``name`` with ``result`` (raw JSON as Telegram sends it, or a factory
        ``(bot, method, params) -> raw``) instead of the default."""
        self._results[name] = result

    def fail(
        self,
        name: str,
        *,
        status_code: int = 400,
        description: str = "Bad Request: test failure",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Make ``name`` fail as Telegram would (aiogram raises TelegramBadRequest & co)."""
        self._results[name] = _Failure(status_code, description, parameters)

    # -- BaseSession -------------------------------------------------------------------------

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,
    ) -> TelegramType:
        files: dict[str, InputFile] = {}
        params: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                params[key] = prepared
        name = method.__api_method__
        self.requests.append(RecordedRequest(name, method, params, files))

        configured = self._results.get(name)
        status_code, body = 200, None
        if isinstance(configured, _Failure):
            status_code = configured.status_code
            body = {"ok": False, "error_code": status_code, "description": configured.description}
            if configured.parameters:
                body["parameters"] = configured.parameters
        elif callable(configured):
            body = {"ok": True, "result": configured(bot, method, params)}
        elif configured is not None:
            body = {"ok": True, "result": configured}
        else:
            body = {"ok": True, "result": self._default_result(bot, method, params)}
        response = self.check_response(
            bot=bot, method=method, status_code=status_code, content=json.dumps(body)
        )
        return typing.cast(TelegramType, response.result)

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        self.streamed_urls.append(url)
        for chunk in self.stream_chunks:
            yield chunk

    async def close(self) -> None:
        self.close_calls += 1

    # -- plausible answers ---------------------------------------------------------------------

    def bot_user(self, bot: Bot) -> dict[str, Any]:
        return {
            "id": bot.id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _default_result(self, bot: Bot, method: TelegramMethod[Any], params: dict[str, Any]) -> Any:
        returning = method.__returning__
        for candidate in _candidates(returning):
            if candidate is Message:
                if "chat_id" in params or "inline_message_id" not in params:
                    return self._message(bot, method.__api_method__, params)
                continue
            raw = self._raw_for(candidate, bot, params)
            if raw is not _NO_DEFAULT:
                return raw
        raise NotImplementedError(
            f"RecordingSession has no default answer for {method.__api_method__} "
            f"(returns {returning!r}); use session.set_result({method.__api_method__!r}, ...)"
        )

    def _raw_for(self, candidate: Any, bot: Bot, params: dict[str, Any]) -> Any:
        origin = typing.get_origin(candidate)
        if origin is list:
            return []
        if candidate is bool:
            return True
        if candidate is int:
            return 0
        if candidate is str:
            return ""
        if candidate is User:
            return self.bot_user(bot)
        if candidate is MessageId:
            return {"message_id": next(self._message_ids)}
        if candidate is WebhookInfo:
            return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if candidate is File:
            file_id = str(params.get("file_id", "file-0"))
            return {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "file_size": sum(len(chunk) for chunk in self.stream_chunks),
                "file_path": f"documents/{file_id}",
            }
        if candidate is BotCommand:
            return {"command": "start", "description": "start"}
        if candidate is ChatFullInfo:
            chat_id = params.get("chat_id")
            return {
                "id": chat_id if isinstance(chat_id, int) else -1,
                "type": "private",
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": True,
                    "limited_gifts": True,
                    "unique_gifts": True,
                    "premium_subscription": True,
                },
            }
        return _NO_DEFAULT

    def _message(self, bot: Bot, api_method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        chat: dict[str, Any] = {"id": chat_id if isinstance(chat_id, int) else -1}
        chat["type"] = "private" if isinstance(chat_id, int) and chat_id > 0 else "supergroup"
        if chat["type"] == "supergroup":
            chat["title"] = str(chat_id)
        message_id = params.get("message_id")
        message: dict[str, Any] = {
            "message_id": message_id if isinstance(message_id, int) else next(self._message_ids),
            "from": self.bot_user(bot),
            "chat": chat,
            "date": int(time.time()),
        }
        if api_method.startswith("edit"):
            message["edit_date"] = int(time.time())
        for key in ("text", "caption"):
            if isinstance(params.get(key), str):
                message[key] = params[key]
        if isinstance(params.get("reply_markup"), dict):
            message["reply_markup"] = params["reply_markup"]
        if api_method == "sendInvoice":
            message["invoice"] = {
                "title": params.get("title", ""),
                "description": params.get("description", ""),
                "start_parameter": params.get("start_parameter", ""),
                "currency": params.get("currency", "XTR"),
                "total_amount": sum(
                    int(price.get("amount", 0)) for price in params.get("prices", [])
                ),
            }
        elif api_method == "sendDocument":
            message["document"] = {"file_id": "doc-1", "file_unique_id": "u-doc-1"}
        elif api_method == "sendPhoto":
            message["photo"] = [
                {"file_id": "photo-1", "file_unique_id": "u-photo-1", "width": 1, "height": 1}
            ]
        return message


_NO_DEFAULT = object()


def _candidates(returning: Any) -> tuple[Any, ...]:
    """The members of a ``Union`` (in order), or the type itself."""
    if typing.get_origin(returning) in (typing.Union, types.UnionType):
        return typing.get_args(returning)
    return (returning,)
