"""Running it configured: a config.toml naming PostgreSQL and a bot token serves the bot;
the compose file sets only variables the app reads, and its ports and URLs agree."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from pydantic import BaseModel
from sqlalchemy import text

from app.bot import build_dispatcher
from app.config import AppSection, load_app_settings
from app.main import create_app
from app.story import load_story
from db_manager import DatabaseSettings, create_engine
from db_manager.telegram import TelegramSettings, register_webhook
from tests.support.asgi import running
from tests.support.telegram import RecordingSession
from tests.support.updates import BOT_TOKEN, WEBHOOK_SECRET, secret_header, start_update

from .e2e_support import USER_A, WEBHOOK_PATH, choice_ids

REPO = Path(__file__).resolve().parents[2]
CONFIG_API_TOKEN = "from-config-toml"


def config_toml(database: DatabaseSettings) -> str:
    return f"""
[app]
api_token = "{CONFIG_API_TOKEN}"
log_level = "WARNING"

[bot]
token = "{BOT_TOKEN}"
webhook_secret = "{WEBHOOK_SECRET}"
webhook_url = "https://bot.example.com{WEBHOOK_PATH}"

[database]
driver = "{database.driver}"
host = "{database.host}"
port = {database.port}
user = "{database.user}"
database = "{database.database}"
connect_timeout = 3.0
"""


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])  # db_settings: a fresh PostgreSQL database
@pytest.mark.parametrize("found_by", ["CONFIG_FILE", "./config.toml"])
async def test_config_toml_with_postgresql_and_a_bot_token_serves_the_bot(
    db_settings: DatabaseSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found_by: str
) -> None:
    if found_by == "CONFIG_FILE":
        path = tmp_path / "elsewhere" / "production.toml"
        path.parent.mkdir()
        monkeypatch.setenv("CONFIG_FILE", str(path))
    else:
        path = tmp_path / "config.toml"  # the working directory (tests chdir to tmp_path)
    assert db_settings.dialect == "postgresql"
    path.write_text(config_toml(db_settings), encoding="utf-8")

    settings = load_app_settings()
    assert settings.database.dialect == "postgresql"
    assert settings.bot.enabled
    telegram = RecordingSession()
    app = create_app(settings, bot_session=telegram, configure_logs=False)
    async with running(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        response = await client.post(
            WEBHOOK_PATH, json=start_update(user_id=USER_A), headers=secret_header()
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["method"] == "sendMessage"
        assert choice_ids(answer["reply_markup"])
        # Without the secret from the file the webhook refuses.
        refused = await client.post(
            WEBHOOK_PATH, json=start_update(user_id=USER_A), headers=secret_header("nope")
        )
        assert refused.status_code == 401
        # The API token from the file opens the API.
        profile = await client.get(
            f"/api/users/{USER_A}", headers={"Authorization": f"Bearer {CONFIG_API_TOKEN}"}
        )
        assert profile.status_code == 200
        assert profile.json()["telegram_id"] == USER_A

    # The user landed in the PostgreSQL database the file names.
    engine = create_engine(settings.database)
    try:
        async with engine.connect() as conn:
            telegram_ids = (await conn.execute(text("SELECT telegram_id FROM app__users"))).all()
    finally:
        await engine.dispose()
    assert [row[0] for row in telegram_ids] == [USER_A]


# -- docker-compose.yml ------------------------------------------------------------------------

SECTIONS: dict[str, type[BaseModel]] = {
    "APP": AppSection,
    "BOT": TelegramSettings,
    "DATABASE": DatabaseSettings,
}
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def compose() -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # PyYAML is a dev dependency; in CI its absence must not pass silently
        message = "PyYAML is needed to parse docker-compose.yml (pip install pyyaml)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def interpolate(value: object, env: dict[str, str]) -> str:
    """``${NAME:-default}`` as compose resolves it, with ``env`` as the shell environment."""
    return _INTERPOLATION.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), str(value))


def app_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run our image (built from the Dockerfile)."""
    services = {name: service for name, service in spec["services"].items() if "build" in service}
    assert "app" in services
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(name): str(value) for name, value in env.items()}


def test_compose_sets_only_variables_the_app_reads() -> None:
    spec = compose()
    for name, service in app_services(spec).items():
        env = environment(service)
        assert env, f"{name} has no environment"
        for variable in env:
            section, sep, key = variable.partition("__")
            assert sep, f"{name}: {variable} is not SECTION__KEY"
            assert section in SECTIONS, f"{name}: {variable}: no section [{section.lower()}]"
            fields = SECTIONS[section].model_fields
            assert key.lower() in fields, (
                f"{name}: {variable}: [{section.lower()}] has no {key.lower()}"
            )


@pytest.mark.parametrize(
    "shell_env",
    [
        {},  # `docker compose up` with nothing set: the bot and the API are off
        {
            "BOT_TOKEN": BOT_TOKEN,
            "BOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BOT_WEBHOOK_URL": "https://bot.example.com/webhook/telegram",
            "API_TOKEN": "compose-api-token",
        },
    ],
    ids=["nothing-set", "bot-and-api"],
)
def test_compose_environment_loads_and_points_at_the_db_service(
    monkeypatch: pytest.MonkeyPatch, shell_env: dict[str, str]
) -> None:
    spec = compose()
    db = spec["services"]["db"]
    db_env = environment(db)
    for service in app_services(spec).values():
        for variable, value in environment(service).items():
            monkeypatch.setenv(variable, interpolate(value, shell_env))
        settings = load_app_settings()  # no config file: the environment alone

        database = settings.database
        assert database.dialect == "postgresql"
        assert database.host in spec["services"], "DATABASE__HOST is not a compose service"
        assert database.host == "db"
        assert database.port == 5432
        assert database.user == db_env["POSTGRES_USER"]
        assert database.password is not None
        assert database.password.get_secret_value() == db_env["POSTGRES_PASSWORD"]
        assert database.database == db_env["POSTGRES_DB"]
        assert settings.bot.enabled is bool(shell_env)
        assert (settings.app.api_token is not None) is bool(shell_env)
        if shell_env:
            assert settings.bot.webhook_url is not None
            assert settings.bot.webhook_url.endswith(settings.bot.webhook_path)
        # The app waits for a healthy database.
        assert service["depends_on"]["db"]["condition"] == "service_healthy"

    # pg_isready checks the same user and database.
    check = " ".join(db["healthcheck"]["test"])
    assert "pg_isready" in check
    assert f"-U {db_env['POSTGRES_USER']}" in check
    assert f"-d {db_env['POSTGRES_DB']}" in check
    assert any(":/var/lib/postgresql/data" in volume for volume in db["volumes"])


def dockerfile_command() -> list[str]:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            parsed = json.loads(line[4:])  # the exec form is a JSON array
            assert isinstance(parsed, list), "CMD should use the exec form"
            return [str(part) for part in parsed]
    raise AssertionError("the Dockerfile has no CMD")


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_compose_ports_and_health_check_agree() -> None:
    spec = compose()
    app = spec["services"]["app"]
    env = environment(app)
    command = [str(part) for part in app.get("command", [])] or dockerfile_command()
    assert command[:4] == ["python", "-m", "app", "run"]

    # What the process listens on: --port/--host override APP__PORT/APP__HOST.
    listen_port = int(_option(command, "--port") or env["APP__PORT"])
    listen_host = _option(command, "--host") or env["APP__HOST"]
    assert int(env["APP__PORT"]) == listen_port, "APP__PORT disagrees with the command's --port"
    assert listen_host == env["APP__HOST"] == "0.0.0.0"  # reachable from outside the container

    # The published port maps onto it.
    published = [str(port) for port in app["ports"]]
    container_ports = {int(port.rsplit(":", 1)[1].split("/")[0]) for port in published}
    assert container_ports == {listen_port}, published

    # The health check asks /health/ready on that port.
    probe = " ".join(str(part) for part in app["healthcheck"]["test"])
    urls = re.findall(r"https?://[^'\" ]+", probe)
    assert urls, probe
    for url in urls:
        assert url == f"http://127.0.0.1:{listen_port}/health/ready", url

    # The Dockerfile exposes the same port.
    exposed = [
        line.split()[1:]
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.startswith("EXPOSE ")
    ]
    assert [str(listen_port)] in exposed


def test_compose_migrates_before_the_app_starts() -> None:
    spec = compose()
    migrate = spec["services"]["migrate"]
    assert shlex.join(migrate["command"]) == "python -m app db upgrade"
    assert environment(migrate) == environment(spec["services"]["app"])
    depends = spec["services"]["app"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert environment(spec["services"]["app"])["DATABASE__CREATE_TABLES"] == "false"


async def test_webhook_registration_asks_for_every_update_the_bot_handles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``python -m app set-webhook`` sends: the URL and secret from the config, and
    the update types of the app's routers (without pre_checkout_query no payment could
    ever complete; without callback_query no button would work)."""
    path = tmp_path / "config.toml"
    unused = DatabaseSettings(
        driver="postgresql+asyncpg", host="db", port=5432, user="app", database="app"
    )
    path.write_text(config_toml(unused), encoding="utf-8")
    settings = load_app_settings()
    telegram = RecordingSession()
    bot = Bot(BOT_TOKEN, session=telegram)
    assert await register_webhook(bot, build_dispatcher(load_story()), settings.bot)
    params = telegram.last("setWebhook").params
    assert params["url"] == f"https://bot.example.com{WEBHOOK_PATH}"
    assert params["secret_token"] == WEBHOOK_SECRET
    assert {"message", "callback_query", "pre_checkout_query"} <= set(params["allowed_updates"])
