"""The app's side of db_manager's outbox: the handler data key and a text adapter.

Handlers that must reach the user even when Telegram or this process has a bad moment
(the story's next scene, a payment's thank-you, a referral notice) enqueue their Bot API
call with ``await outbox.send(method)`` instead of calling the Bot API: the call commits
with the handler's writes and the sender delivers it after the commit. A call that fails
for good (a 400 such as "message is not modified") becomes a dead outbox row, logged by
the sender and retryable by an operator; a 403 marks the user unreachable
(:func:`app.bot.reachability.forbidden_hook`).
"""

from __future__ import annotations

from aiogram.methods import SendMessage

from db_manager.telegram.outbox import Outbox

__all__ = ["BotOutbox", "Outbox"]


class BotOutbox:
    """:class:`app.services.TextOutbox` over an :class:`Outbox`: plain text messages."""

    __slots__ = ("outbox",)

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def __repr__(self) -> str:
        return f"<BotOutbox {self.outbox!r}>"

    async def send_text(self, chat_id: int, text: str) -> None:
        await self.outbox.send(SendMessage(chat_id=chat_id, text=text))
