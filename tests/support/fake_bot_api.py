"""A fake Telegram Bot API server on loopback, for tests that use aiogram's real session.

::

    with FakeBotApi() as fake:                         # or: async with FakeBotApi() as fake
        settings = TelegramSettings(token="123:ABC", api_server=fake.base_url, ...)
        ...                                            # everything the bot sends reaches fake
        fake.wait_for_calls(1, method="sendMessage")   # or: await fake.wait_calls(...)
        assert fake.sent_texts(chat_id=42) == ["hi"]

The server (aiohttp.web) runs in a thread with its own event loop, so it serves sync and
async tests alike, and child processes too. It answers URLs ``{base}/bot{token}/{method}``
as Telegram does (``{"ok": true, "result": ...}``), records every call as a :class:`Call`
(JSON fields decoded, failed attempts included, with the status they got), and fails on
demand: :meth:`FakeBotApi.fail` (429 with ``retry_after``, 5xx, 400, 403 ...) and
:meth:`FakeBotApi.drop` (the connection closed without an answer), per method, per chat,
a number of times or until :meth:`FakeBotApi.clear_failures`. The access log is off: the
token is part of every URL and must never be logged.

:func:`max_per_window` and :func:`min_gap_per_chat` check recorded calls against flood
limits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.web_request import FileField

__all__ = [
    "Call",
    "FakeBotApi",
    "fake_bot_api",
    "max_per_window",
    "min_gap_per_chat",
]

_TOKEN = re.compile(r"^/bot(?P<bot_id>\d{1,20}):(?P<secret>[A-Za-z0-9_-]{1,100})/(?P<method>\w+)$")

# Fields whose values are strings in the Bot API: kept as sent even when they look like JSON
# (a text "42" stays "42"). Every other field is JSON-decoded when it parses.
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "url",
        "secret_token",
        "ip_address",
        "title",
        "description",
        "payload",
        "currency",
        "provider_token",
        "start_parameter",
        "callback_query_id",
        "pre_checkout_query_id",
        "shipping_query_id",
        "telegram_payment_charge_id",
        "error_message",
        "parse_mode",
        "action",
        "inline_message_id",
        "language_code",
        "message_effect_id",
        "business_connection_id",
        "file_id",
        "name",
        "short_description",
    }
)

_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_NOT_FOUND: dict[str, Any] = {"ok": False, "error_code": 404, "description": "Not Found"}


@dataclass(frozen=True)
class Call:
    """One request the fake received.

    ``at`` is ``time.monotonic()`` and ``wall`` is ``time.time()``, both taken on arrival;
    ``status`` is the HTTP status answered, ``None`` when the connection was dropped.
    """

    method: str
    params: dict[str, Any]
    token_bot_id: int | None
    at: float
    wall: float
    chat_id: int | str | None
    status: int | None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Answered ``{"ok": true}``: delivered, as far as Telegram is concerned."""
        return self.status == 200

    @property
    def dropped(self) -> bool:
        return self.status is None


@dataclass
class _Rule:
    method: str | None
    chat_id: int | str | None
    status: int | None  # None: drop the connection
    description: str
    parameters: dict[str, Any] | None
    remaining: int | None  # None: until cleared

    def matches(self, method: str, chat_id: int | str | None) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.chat_id is None or self.chat_id == chat_id


class FakeBotApi:
    """The fake Bot API server; see the module docstring."""

    def __init__(
        self,
        *,
        bot_username: str = "test_bot",
        bot_first_name: str = "Test Bot",
        latency: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        # Seconds every call waits before it is answered (a slow Bot API).
        self.latency = latency
        self._host = host
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._rules: list[_Rule] = []
        self._message_ids: dict[tuple[int | None, int | str], Iterator[int]] = {}
        self._messages: dict[tuple[int | None, int | str, int], dict[str, Any]] = {}
        self._webhooks: dict[int | None, dict[str, Any]] = {}
        self._commands: dict[int | None, list[Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopped = False

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"<FakeBotApi {where} calls={len(self._calls)}>"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``[bot] api_server``."""
        if self._port is None:
            raise RuntimeError("FakeBotApi is not started; call start() or use it in a with")
        return f"http://{self._host}:{self._port}"

    def start(self) -> FakeBotApi:
        if self._stopped:
            raise RuntimeError("FakeBotApi was stopped; create a new one")
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        self._port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()
        problem: list[BaseException] = []

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            # No access log: the token is in every URL.
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runner = runner

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # reported to start()'s caller
                problem.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-bot-api", daemon=True)
        self._thread.start()
        started.wait(10)
        if problem:
            raise RuntimeError("FakeBotApi could not start") from problem[0]
        return self

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        self._stopped = True
        if loop is None or thread is None:
            return
        if runner is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeBotApi:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what a test looks at -----------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every call received so far (failed and dropped ones too), in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, method: str, chat_id: int | str | None = None) -> list[Call]:
        return [
            call
            for call in self.calls
            if call.method == method and (chat_id is None or call.chat_id == chat_id)
        ]

    def delivered(self, method: str | None = None, chat_id: int | str | None = None) -> list[Call]:
        """The calls answered ok (``status == 200``), optionally of one method / chat."""
        return [
            call
            for call in self.calls
            if call.ok
            and (method is None or call.method == method)
            and (chat_id is None or call.chat_id == chat_id)
        ]

    def sent_texts(self, chat_id: int | str | None = None) -> list[str]:
        """The texts of the delivered ``sendMessage`` calls (to ``chat_id``), in order."""
        return [str(call.params.get("text")) for call in self.delivered("sendMessage", chat_id)]

    def clear(self) -> None:
        """Forget the recorded calls (failure rules stay; see :meth:`clear_failures`)."""
        with self._lock:
            self._calls.clear()

    def _matching(self, method: str | None, chat_id: int | str | None) -> list[Call]:
        return [
            call
            for call in self._calls
            if (method is None or call.method == method)
            and (chat_id is None or call.chat_id == chat_id)
        ]

    def wait_for_calls(
        self,
        n: int,
        method: str | None = None,
        timeout: float = 10.0,
        *,
        chat_id: int | str | None = None,
    ) -> list[Call]:
        """Block until ``n`` calls (of ``method``, to ``chat_id``) were recorded; return them.

        Raises ``AssertionError`` saying what arrived when ``timeout`` passes first. From an
        async test use :meth:`wait_calls`, which does not block the event loop.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self._matching(method, chat_id)
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [call.method for call in self._calls]
                    raise AssertionError(
                        f"expected {n} {method or 'Bot API'} call(s) within {timeout} s, "
                        f"got {len(found)}; all calls: {got}"
                    )
                self._changed.wait(left)

    async def wait_calls(
        self,
        n: int,
        method: str | None = None,
        timeout: float = 10.0,
        *,
        chat_id: int | str | None = None,
    ) -> list[Call]:
        """:meth:`wait_for_calls` for async tests: polls without blocking the loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self._matching(method, chat_id)
            if len(found) >= n or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.005)
        if len(found) >= n:
            return found
        return self.wait_for_calls(n, method, 0, chat_id=chat_id)  # raises with the summary

    # -- how a test steers it -----------------------------------------------------------------

    def fail(
        self,
        method: str | None = None,
        chat_id: int | str | None = None,
        *,
        status: int = 400,
        description: str | None = None,
        retry_after: int | None = None,
        times: int | None = 1,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Answer ``method`` (every method when ``None``) to ``chat_id`` (every chat when
        ``None``) with ``status`` as Telegram does, ``times`` times (once by default; ``None``: until
        :meth:`clear_failures`).

        429 gets ``"Too Many Requests: retry after N"`` and ``parameters.retry_after``
        (``retry_after`` defaults to 3); other statuses get Telegram's usual description
        unless ``description`` is given. The first matching rule, oldest first, applies.
        """
        params = dict(parameters or {})
        if status == 429:
            wait = 3 if retry_after is None else retry_after
            params["retry_after"] = wait
            text = description or f"Too Many Requests: retry after {wait}"
        else:
            if retry_after is not None:
                params["retry_after"] = retry_after
            text = description or _DESCRIPTIONS.get(status, "Bad Request: test failure")
        rule = _Rule(method, chat_id, status, text, params or None, times)
        with self._lock:
            self._rules.append(rule)

    def drop(
        self,
        method: str | None = None,
        chat_id: int | str | None = None,
        times: int | None = 1,
    ) -> None:
        """Close the connection of matching calls without an answer (aiogram raises
        ``TelegramNetworkError``), ``times`` times (``None``: until cleared)."""
        with self._lock:
            self._rules.append(_Rule(method, chat_id, None, "", None, times))

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()

    # -- the server ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived, wall = time.monotonic(), time.time()
        params, files = await _read_params(request)
        match = _TOKEN.match(request.path)
        if match is None:
            method = request.path.rsplit("/", 1)[-1]
            self._record(Call(method, params, None, arrived, wall, None, 404, files))
            return web.json_response(_NOT_FOUND, status=404)
        bot_id = int(match["bot_id"])
        method = match["method"]
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int | str):
            chat_id = None
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        with self._lock:
            rule = next((r for r in self._rules if r.matches(method, chat_id)), None)
            if rule is not None and rule.remaining is not None:
                rule.remaining -= 1
        if rule is not None and rule.status is None:
            self._record(Call(method, params, bot_id, arrived, wall, chat_id, None, files))
            if request.transport is not None:
                request.transport.close()
            # Nothing is written to the closed transport; aiohttp sees a lost client.
            raise asyncio.CancelledError
        if rule is not None and rule.status is not None:
            body: dict[str, Any] = {
                "ok": False,
                "error_code": rule.status,
                "description": rule.description,
            }
            if rule.parameters:
                body["parameters"] = rule.parameters
            self._record(Call(method, params, bot_id, arrived, wall, chat_id, rule.status, files))
            return web.json_response(body, status=rule.status)
        with self._lock:
            result = self._result(bot_id, method, params)
        self._record(Call(method, params, bot_id, arrived, wall, chat_id, 200, files))
        return web.json_response({"ok": True, "result": result})

    def _record(self, call: Call) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    # -- answers (called under the lock) ------------------------------------------------------

    def _bot_user(self, bot_id: int) -> dict[str, Any]:
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _result(self, bot_id: int, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return self._bot_user(bot_id)
        if method == "setWebhook":
            self._webhooks[bot_id] = params
            return True
        if method == "deleteWebhook":
            self._webhooks.pop(bot_id, None)
            return True
        if method == "getWebhookInfo":
            hook = self._webhooks.get(bot_id, {})
            info: dict[str, Any] = {
                "url": hook.get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": 0,
            }
            if hook.get("max_connections"):
                info["max_connections"] = hook["max_connections"]
            if hook.get("allowed_updates"):
                info["allowed_updates"] = hook["allowed_updates"]
            return info
        if method == "setMyCommands":
            self._commands[bot_id] = list(params.get("commands") or [])
            return True
        if method == "getMyCommands":
            return self._commands.get(bot_id, [])
        if method in ("sendMessage", "sendInvoice"):
            return self._new_message(bot_id, method, params)
        if method in ("editMessageText", "editMessageReplyMarkup", "editMessageCaption"):
            if "inline_message_id" in params:
                return True
            return self._edited_message(bot_id, method, params)
        return True

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if isinstance(chat_id, str):  # "@channelusername"
            return {"id": -1001, "type": "channel", "title": chat_id, "username": chat_id[1:]}
        if not isinstance(chat_id, int):
            chat_id = 0
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}

    def _new_message(self, bot_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id", 0)
        key = (bot_id, chat_id if isinstance(chat_id, int | str) else 0)
        counter = self._message_ids.setdefault(key, itertools.count(1))
        message: dict[str, Any] = {
            "message_id": next(counter),
            "from": self._bot_user(bot_id),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
        }
        if isinstance(params.get("text"), str):
            message["text"] = params["text"]
        _echo_markup(message, params)
        if method == "sendInvoice":
            prices = params.get("prices") or []
            message["invoice"] = {
                "title": params.get("title", ""),
                "description": params.get("description", ""),
                "start_parameter": params.get("start_parameter", ""),
                "currency": params.get("currency", "XTR"),
                "total_amount": sum(int(price.get("amount", 0)) for price in prices),
            }
        self._messages[(bot_id, key[1], message["message_id"])] = message
        return message

    def _edited_message(self, bot_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id", 0)
        message_id = params.get("message_id", 0)
        key = (bot_id, chat_id if isinstance(chat_id, int | str) else 0, int(message_id))
        message = dict(
            self._messages.get(key)
            or {
                "message_id": int(message_id),
                "from": self._bot_user(bot_id),
                "chat": self._chat(chat_id),
                "date": int(time.time()),
            }
        )
        message["edit_date"] = int(time.time())
        if method == "editMessageText" and isinstance(params.get("text"), str):
            message["text"] = params["text"]
        if method == "editMessageCaption" and isinstance(params.get("caption"), str):
            message["caption"] = params["caption"]
        message.pop("reply_markup", None)
        _echo_markup(message, params)
        self._messages[key] = message
        return message


def _echo_markup(message: dict[str, Any], params: dict[str, Any]) -> None:
    # Telegram echoes inline keyboards only (a Message's reply_markup is inline).
    markup = params.get("reply_markup")
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        message["reply_markup"] = markup


def _decode(key: str, value: str) -> Any:
    if key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    params: dict[str, Any] = {key: _decode(key, value) for key, value in request.query.items()}
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params, files
    if request.method == "POST":
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = _decode(key, value)
            elif isinstance(value, FileField):
                files[key] = value.file.read()
    return params, files


# -- flood-limit checks ------------------------------------------------------------------------


def max_per_window(
    calls: Iterable[Call],
    window: float = 1.0,
    key: Callable[[Call], Hashable] | str | None = None,
) -> int:
    """The most ok calls whose arrival times lie within any ``window`` seconds (an interval
    ``[t, t + window)``), overall or, with ``key`` (``"chat_id"`` or a function of the call),
    the most for any one key."""
    key_of: Callable[[Call], Hashable]
    if isinstance(key, str):
        attribute = key

        def key_of(call: Call) -> Hashable:
            value: Hashable = getattr(call, attribute)
            return value

    elif key is None:

        def key_of(call: Call) -> Hashable:
            return None

    else:
        key_of = key
    groups: dict[Hashable, list[float]] = {}
    for call in calls:
        if call.ok:
            groups.setdefault(key_of(call), []).append(call.at)
    best = 0
    for times in groups.values():
        best = max(best, _densest(sorted(times), window))
    return best


def _densest(times: Sequence[float], window: float) -> int:
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def min_gap_per_chat(calls: Iterable[Call]) -> float:
    """The shortest time between two consecutive ok calls to the same chat (``math.inf``
    when no chat got two)."""
    per_chat: dict[int | str, list[float]] = {}
    for call in calls:
        if call.ok and call.chat_id is not None:
            per_chat.setdefault(call.chat_id, []).append(call.at)
    gap = math.inf
    for times in per_chat.values():
        ordered = sorted(times)
        for earlier, later in itertools.pairwise(ordered):
            gap = min(gap, later - earlier)
    return gap


@pytest.fixture
def fake_bot_api() -> Iterator[FakeBotApi]:
    """A started :class:`FakeBotApi`, stopped after the test."""
    with FakeBotApi() as fake:
        yield fake
