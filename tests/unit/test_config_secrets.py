"""No config error holds a secret: every secret field of every section, given as an argument,
an environment variable or in the config file, against every validator that can fail.

The secret must not appear in the message (``str`` and ``repr`` of the ConfigError), nor the
part of a bot token after ``:``, nor the password inside a URL, raw or percent-encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr, field_validator, model_validator

from app.config import AppSection
from db_manager import ConfigError, DatabaseSettings, SectionSettings, load_settings
from db_manager.telegram import TelegramSettings

PASSWORD = "pw-Secret:0042/x%y@z"
URL_PASSWORD = "url@Pass:w/rd%42"  # unencoded, it makes the URL unparsable
TOKEN = "123456789:AAHsecretTokenPart0123456789abcdef"
WEBHOOK_SECRET = "whSecretValue_0123456789"
API_TOKEN = "api-token-SECRET-0123456789"
REPLICA_URL = "postgresql+asyncpg://rep:replica-Pass-77@replica-host:5432/app"
GOOD_URL = f"postgresql+asyncpg://app:{quote_plus(URL_PASSWORD)}@db:5432/app"
PG = "postgresql+asyncpg"

Form = str  # "argument", "env" or "file"
ALL_FORMS: tuple[Form, ...] = ("argument", "env", "file")


@dataclass(frozen=True)
class Case:
    name: str
    cls: type[SectionSettings]
    values: dict[str, Any]
    secrets: tuple[str, ...]
    # A wrong type cannot be written as an environment variable (every value is a string).
    forms: tuple[Form, ...] = ALL_FORMS
    fragments: tuple[str, ...] = field(default=())


CASES = [
    # [database]: password, url, replicas
    Case("password, sqlite with a host", DatabaseSettings, {"host": "db.example", "password": PASSWORD}, (PASSWORD,)),
    Case("password, sqlite with a port", DatabaseSettings, {"port": 5432, "password": PASSWORD}, (PASSWORD,)),
    Case("password of the wrong type", DatabaseSettings, {"driver": PG, "password": [PASSWORD]}, (PASSWORD,), ("argument", "file")),
    Case("password as a table", DatabaseSettings, {"driver": PG, "password": {"value": PASSWORD}}, (PASSWORD,), ("argument", "file")),
    Case("password, port not a number", DatabaseSettings, {"driver": PG, "password": PASSWORD, "port": "abc"}, (PASSWORD,)),
    Case("password, port out of range", DatabaseSettings, {"driver": PG, "password": PASSWORD, "port": 0}, (PASSWORD,)),
    Case("password, unknown driver", DatabaseSettings, {"driver": "mysql+aiomysql", "password": PASSWORD}, (PASSWORD,)),
    # An unknown DATABASE__HOTS variable is ignored (the environment is shared), so no env form.
    Case("password, unknown key", DatabaseSettings, {"password": PASSWORD, "hots": "db"}, (PASSWORD,), ("argument", "file")),
    Case("url not percent-encoded", DatabaseSettings, {"url": f"{PG}://app:{URL_PASSWORD}@db/app"}, (URL_PASSWORD,)),
    Case("url not a url", DatabaseSettings, {"url": f"app:{URL_PASSWORD} at db"}, (URL_PASSWORD,)),
    Case("url, unsupported driver", DatabaseSettings, {"url": f"mysql://app:{quote_plus(URL_PASSWORD)}@db/app"}, (URL_PASSWORD,)),
    Case("url of the wrong type", DatabaseSettings, {"url": [GOOD_URL]}, (URL_PASSWORD,), ("argument", "file")),
    Case("url, pool size invalid", DatabaseSettings, {"url": GOOD_URL, "pool_size": 0}, (URL_PASSWORD,)),
    Case("replicas, sqlite with a host", DatabaseSettings, {"host": "db.example", "replicas": [REPLICA_URL]}, (REPLICA_URL,)),
    Case("replicas not a list", DatabaseSettings, {"driver": PG, "replicas": REPLICA_URL}, (REPLICA_URL,)),
    Case("replicas, a table in the list", DatabaseSettings, {"driver": PG, "replicas": [{"url": REPLICA_URL}]}, (REPLICA_URL,)),
    # [bot]: token, webhook_secret
    Case("token without webhook_secret", TelegramSettings, {"token": TOKEN}, (TOKEN,)),
    Case("token malformed", TelegramSettings, {"token": "bot" + TOKEN, "webhook_secret": WEBHOOK_SECRET}, ("bot" + TOKEN, WEBHOOK_SECRET)),
    Case("token of the wrong type", TelegramSettings, {"token": [TOKEN], "webhook_secret": WEBHOOK_SECRET}, (TOKEN, WEBHOOK_SECRET), ("argument", "file")),
    Case("webhook_secret malformed", TelegramSettings, {"token": TOKEN, "webhook_secret": WEBHOOK_SECRET + "/bad!"}, (TOKEN, WEBHOOK_SECRET)),
    Case("webhook_secret of the wrong type", TelegramSettings, {"token": TOKEN, "webhook_secret": {"v": WEBHOOK_SECRET}}, (TOKEN, WEBHOOK_SECRET), ("argument", "file")),
    Case("token and secret, body limit too small", TelegramSettings, {"token": TOKEN, "webhook_secret": WEBHOOK_SECRET, "max_body_size": 10}, (TOKEN, WEBHOOK_SECRET)),
    # [app]: api_token
    Case("api_token with surrounding spaces", AppSection, {"api_token": f" {API_TOKEN} "}, (API_TOKEN,)),
    Case("api_token not ASCII", AppSection, {"api_token": API_TOKEN + "é"}, (API_TOKEN,)),
    Case("api_token with a tab", AppSection, {"api_token": API_TOKEN.replace("-", "\t")}, (API_TOKEN.replace("-", "\t"),)),
    Case("api_token too short", AppSection, {"api_token": "SECRET-short"}, ("SECRET-short",)),
    Case("api_token of the wrong type", AppSection, {"api_token": [API_TOKEN]}, (API_TOKEN,), ("argument", "file")),
    Case("api_token, port out of range", AppSection, {"api_token": API_TOKEN, "port": 0}, (API_TOKEN,)),
]  # fmt: skip


def fragments(secret: str) -> set[str]:
    """The spellings of ``secret`` that must not leak: whole, after ``:``, the URL password."""
    parts = {secret, secret.strip(), secret.partition(":")[2]}
    if "://" in secret:
        userinfo = secret.partition("://")[2].rpartition("@")[0]
        parts.add(userinfo.partition(":")[2])
    spelled = {form for part in parts for form in (part, quote(part, safe=""), quote_plus(part))}
    return {form for form in spelled if len(form) >= 6}


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def load(case: Case, form: Form, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigError:
    path = tmp_path / "config.toml"
    path.write_text(f"[{case.cls.section}]\n", encoding="utf-8")
    overrides: dict[str, Any] = {}
    if form == "argument":
        overrides = dict(case.values)
    elif form == "env":
        for key, value in case.values.items():
            text = value if isinstance(value, str) else json.dumps(value)
            monkeypatch.setenv(f"{case.cls.section.upper()}__{key.upper()}", str(text))
    else:
        body = "".join(f"{key} = {toml_value(value)}\n" for key, value in case.values.items())
        path.write_text(f"[{case.cls.section}]\n{body}", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(case.cls, config_file=path, **overrides)
    return info.value


@pytest.mark.parametrize(
    ("case", "form"),
    [pytest.param(case, form, id=f"{case.name}-{form}") for case in CASES for form in case.forms],
)
def test_no_config_error_holds_a_secret(
    case: Case, form: Form, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = load(case, form, tmp_path, monkeypatch)

    message = str(error)
    assert "\n" not in message, message
    where = {
        "argument": "argument ",
        "env": f"{case.cls.section.upper()}__",
        "file": f"[{case.cls.section}]",
    }
    assert where[form] in message or f"[{case.cls.section}]" in message, message
    for secret in case.secrets:
        for fragment in fragments(secret):
            assert fragment not in message, (fragment, message)
            assert fragment not in repr(error), (fragment, repr(error))


def test_a_section_level_error_says_what_is_wrong_without_the_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reported case: BOT__TOKEN without BOT__WEBHOOK_SECRET.
    monkeypatch.setenv("BOT__TOKEN", TOKEN)

    with pytest.raises(ConfigError) as info:
        load_settings(TelegramSettings)

    message = str(info.value)
    assert message.startswith("[bot] (section): "), message
    assert "webhook_secret is required when token is set" in message
    assert "got" not in message  # the section's input is not quoted at all


def test_a_non_secret_value_is_still_quoted_with_its_secret_keys_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = Case("port", DatabaseSettings, {"driver": PG, "port": {"password": PASSWORD}}, ())
    text = Case("port", DatabaseSettings, {"driver": PG, "password": PASSWORD, "port": "abc"}, ())

    error = load(table, "file", tmp_path, monkeypatch)

    assert "[database] port" in str(error)
    assert "(got {'password': '***'})" in str(error)
    assert "(got 'abc')" in str(load(text, "file", tmp_path, monkeypatch))


class QuotingSection(SectionSettings):
    """A section whose validators quote the secret in their own messages (an app's bug)."""

    section: ClassVar[str] = "quoting"
    secret_keys: ClassVar[frozenset[str]] = frozenset({"key"})

    key: SecretStr | None = None
    mode: str = "a"

    @field_validator("key")
    @classmethod
    def key_has_no_spaces(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and " " in value.get_secret_value():
            raise ValueError(f"{value.get_secret_value()!r} has a space")
        return value

    @model_validator(mode="after")
    def mode_matches_key(self) -> QuotingSection:
        if self.key is not None and self.mode != "a":
            raise ValueError(f"mode {self.mode} does not fit key {self.key.get_secret_value()}")
        return self


@pytest.mark.parametrize(
    ("key", "mode"), [("quoted secret value", "a"), ("quotedSecretValue", "b")]
)
@pytest.mark.parametrize("form", ALL_FORMS)
def test_a_validator_quoting_the_secret_leaks_nothing(
    key: str, mode: str, form: Form, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = Case("quoting", QuotingSection, {"key": key, "mode": mode}, (key,))

    error = load(case, form, tmp_path, monkeypatch)

    assert key not in str(error)
    assert "***" in str(error)  # the validator's message is kept, the secret masked
