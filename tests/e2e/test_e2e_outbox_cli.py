"""``[bot] api_server`` in config.toml: ``python -m app set-webhook``, the app's sends and
``python -m app broadcast`` all reach that server (here the fake Bot API, over real HTTP).

One PostgreSQL test with two child processes: the CLI commands run as a deploy runs them,
configured by the file alone (``--config``); the app in this process reads the same file
through ``CONFIG_FILE``. The CLI's broadcast only enqueues; the running app's sender,
woken by PostgreSQL's NOTIFY at the CLI's commit, delivers.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from app.main import create_app
from app.story import Story
from db_manager import DatabaseSettings
from tests.support.asgi import running
from tests.support.fake_bot_api import FakeBotApi
from tests.support.processes import child_env
from tests.support.updates import (
    BOT_ID,
    BOT_TOKEN,
    WEBHOOK_SECRET,
    callback_query_update,
    secret_header,
    start_update,
)

from .fake_deployment import my_chat_member_update
from .outbox_support import FAST_SENDER, delivered, outbox_settled

pytestmark = pytest.mark.postgres

API_TOKEN = "outbox-cli-api-token-0123456789"
WEBHOOK_URL = "https://bot.example.com/webhook/telegram"
USERS = tuple(range(7_200_001, 7_200_006))
CHILD_TIMEOUT = 120.0  # an interpreter importing aiogram on a busy host


def _config(database: DatabaseSettings, api_server: str) -> str:
    sender = "\n".join(f"{key} = {value}" for key, value in FAST_SENDER.items())
    return f"""
[app]
api_token = "{API_TOKEN}"
log_level = "WARNING"

[bot]
token = "{BOT_TOKEN}"
webhook_secret = "{WEBHOOK_SECRET}"
webhook_url = "{WEBHOOK_URL}"
api_server = "{api_server}"
{sender}

[database]
driver = "{database.driver}"
host = "{database.host}"
port = {database.port}
user = "{database.user}"
database = "{database.database}"
"""


async def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "--config", str(config), *args],
        env=child_env(),
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )


@pytest.mark.parametrize("backend", ["postgres"])
async def test_api_server_of_config_toml_takes_set_webhook_every_send_and_the_cli_broadcast(
    db_settings: DatabaseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    story: Story,
) -> None:
    async with FakeBotApi() as fake:
        config = tmp_path / "deploy.toml"
        config.write_text(_config(db_settings, fake.base_url), encoding="utf-8")

        # set-webhook, a child process configured by the file: the fake gets the URL and
        # secret, and the update types the app handles (my_chat_member too).
        result = await _cli(config, "set-webhook")
        assert result.returncode == 0, result.stderr
        [hook] = fake.calls_of("setWebhook")
        assert hook.ok
        assert hook.token_bot_id == BOT_ID
        assert hook.params["url"] == WEBHOOK_URL
        assert hook.params["secret_token"] == WEBHOOK_SECRET
        assert {"message", "callback_query", "my_chat_member"} <= set(
            hook.params["allowed_updates"]
        )

        monkeypatch.setenv("CONFIG_FILE", str(config))
        app = create_app(configure_logs=False)  # settings from the same file
        async with running(app) as client:
            await fake.wait_calls(1, "getMe")  # the startup's, for /ref's link

            async def deliver(update: dict[str, object]) -> None:
                response = await client.post(
                    "/webhook/telegram", json=update, headers=secret_header()
                )
                assert response.status_code == 200, response.text

            for telegram_id in USERS:
                await deliver(start_update(user_id=telegram_id))
            # A button press: its next scene goes out through the outbox, to the fake.
            choice = story.start_scene.choices[0]
            await deliver(
                callback_query_update(f"choice:{choice.id}", user_id=USERS[0], message_id=9)
            )
            [edit] = await delivered(fake, "editMessageText")
            assert edit.chat_id == USERS[0]
            assert edit.params["text"] == story.scene(choice.target).text

            # A text Telegram cannot send is refused before anything is enqueued.
            refused = await _cli(config, "broadcast", "--text", "   ")
            assert refused.returncode == 2
            assert refused.stderr.startswith("error: --text:"), refused.stderr
            assert len(await outbox_settled(app.state.database.engine)) == 1  # the edit only

            # One reader blocks the bot; the CLI's broadcast skips them.
            blocked = USERS[2]
            await deliver(my_chat_member_update(blocked, "kicked"))
            result = await _cli(config, "broadcast", "--text", "From the command line")
            assert result.returncode == 0, result.stderr
            last_line = result.stdout.splitlines()[-1]
            assert last_line.startswith(f"enqueued {len(USERS) - 1} messages"), result.stdout
            calls = await delivered(fake, "sendMessage", len(USERS) - 1)
            assert {call.chat_id for call in calls} == set(USERS) - {blocked}
            assert {call.params["text"] for call in calls} == {"From the command line"}
            rows = await outbox_settled(app.state.database.engine)
            assert rows.count(("sendMessage", "sent", USERS[0])) == 1
            assert len(rows) == 1 + len(USERS) - 1

        # Every call of the three processes' bot went to the configured server, with its token.
        assert {call.token_bot_id for call in fake.calls} == {BOT_ID}
        assert {call.method for call in fake.calls} == {
            "setWebhook",
            "getMe",
            "editMessageText",
            "sendMessage",
        }
