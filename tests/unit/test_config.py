"""Settings: precedence of the sources, secrecy of the password, one clear line per mistake."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import structlog
from structlog.testing import capture_logs

from db_manager import (
    ConfigError,
    Database,
    DatabaseSettings,
    DatabaseUnavailable,
    create_engine,
    load_settings,
)
from tests.support.ports import free_port

PASSWORD = "p@ss:w/rd%"
# Every spelling of the password that could leak: raw and percent-encoded.
PASSWORD_FORMS = (PASSWORD, quote_plus(PASSWORD), quote(PASSWORD, safe=""))


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def assert_no_password(text: str) -> None:
    for form in PASSWORD_FORMS:
        assert form not in text


# -- precedence: defaults < config.toml < environment < arguments ---------------------------

FILE_BODY = """\
[database]
driver = "postgresql+asyncpg"
user = "file_user"
host = "file-host"
port = 5433
database = "file_db"
pool_size = 7
"""


def test_defaults_are_an_sqlite_file_through_aiosqlite() -> None:
    settings = load_settings()

    assert settings.driver == "sqlite+aiosqlite"
    assert settings.sqlalchemy_url.drivername == "sqlite+aiosqlite"
    assert settings.sqlalchemy_url.database == "app.sqlite3"
    assert settings.pool_size == 5
    assert settings.pool_pre_ping is True
    assert settings.hide_parameters is True


def test_config_file_named_by_argument_overrides_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path / "elsewhere.toml", FILE_BODY)

    settings = load_settings(config_file=path)

    assert settings.driver == "postgresql+asyncpg"
    assert settings.host == "file-host"
    assert settings.port == 5433
    assert settings.pool_size == 7
    assert settings.max_overflow == 10  # not in the file: the default stays


def test_config_file_named_by_env_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path / "named.toml", FILE_BODY)
    monkeypatch.setenv("CONFIG_FILE", str(path))

    settings = load_settings()

    assert settings.host == "file-host"
    assert settings.pool_size == 7


def test_config_toml_in_the_working_directory_is_read_by_default(tmp_path: Path) -> None:
    # The autouse fixture made tmp_path the working directory.
    write_config(tmp_path / "config.toml", FILE_BODY)

    assert load_settings().host == "file-host"


def test_config_file_argument_wins_over_config_file_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        tmp_path / "from_env.toml", '[database]\ndriver = "postgresql+asyncpg"\nhost = "a"\n'
    )
    write_config(
        tmp_path / "from_arg.toml", '[database]\ndriver = "postgresql+asyncpg"\nhost = "b"\n'
    )
    monkeypatch.setenv("CONFIG_FILE", str(tmp_path / "from_env.toml"))

    assert load_settings(config_file=tmp_path / "from_arg.toml").host == "b"


def test_environment_overrides_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path / "config.toml", FILE_BODY)
    monkeypatch.setenv("DATABASE__HOST", "env-host")
    monkeypatch.setenv("DATABASE__PORT", "6000")

    settings = load_settings(config_file=path)

    assert settings.host == "env-host"
    assert settings.port == 6000
    assert settings.user == "file_user"  # not in the environment: the file's value stays
    assert settings.sqlalchemy_url.host == "env-host"


def test_environment_overrides_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE__POOL_SIZE", "11")

    assert load_settings().pool_size == 11


def test_arguments_override_environment_and_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path / "config.toml", FILE_BODY)
    monkeypatch.setenv("DATABASE__HOST", "env-host")
    monkeypatch.setenv("DATABASE__PORT", "6000")

    settings = load_settings(config_file=path, host="arg-host")

    assert settings.host == "arg-host"
    assert settings.port == 6000  # the environment still beats the file
    assert settings.database == "file_db"  # and the file still beats the default
    assert settings.sqlalchemy_url.render_as_string(hide_password=True) == (
        "postgresql+asyncpg://file_user@arg-host:6000/file_db"
    )


# -- the password never shows ----------------------------------------------------------------


def test_special_character_password_builds_a_correct_url() -> None:
    settings = DatabaseSettings(
        driver="postgresql+asyncpg", user="app", password=PASSWORD, host="db", database="app_db"
    )

    url = settings.sqlalchemy_url
    assert url.password == PASSWORD
    assert url.username == "app"
    assert url.host == "db"
    assert url.port == 5432
    assert url.database == "app_db"


def test_password_is_absent_from_repr_and_str_of_settings_and_engine_url() -> None:
    settings = DatabaseSettings(
        driver="postgresql+asyncpg", user="app", password=PASSWORD, host="db", database="app_db"
    )
    engine = create_engine(settings)

    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.describe()),
        settings.redacted_url,
        str(engine.url),
        repr(engine.url),
        repr(engine),
    ):
        assert_no_password(text)


def test_password_in_a_url_setting_is_absent_from_repr_and_engine_url() -> None:
    url = f"postgresql+asyncpg://app:{quote_plus(PASSWORD)}@db:5432/app_db"
    settings = DatabaseSettings(url=url)

    assert settings.sqlalchemy_url.password == PASSWORD
    assert_no_password(repr(settings))
    assert_no_password(str(create_engine(settings).url))


def test_password_from_config_file_is_absent_from_repr(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.toml",
        f'[database]\ndriver = "postgresql+asyncpg"\nuser = "app"\npassword = "{PASSWORD}"\n',
    )

    settings = load_settings(config_file=path)

    assert settings.sqlalchemy_url.password == PASSWORD
    assert_no_password(repr(settings))


async def test_password_is_absent_from_captured_logs_and_errors(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # A server that refuses connections: start() logs, fails and disposes.
    settings = DatabaseSettings(
        driver="postgresql+asyncpg",
        user="app",
        password=PASSWORD,
        host="127.0.0.1",
        port=free_port(),
        database="app_db",
        connect_timeout=0.3,
    )
    caplog.set_level(logging.DEBUG)
    database = Database(settings)

    with capture_logs() as captured, pytest.raises(DatabaseUnavailable) as info:
        await database.start()

    assert any(entry["event"] == "database starting" for entry in captured)
    assert_no_password(repr(captured))
    assert_no_password(str(info.value))
    assert_no_password(repr(info.value))

    # And through whatever structlog is configured to print, plus stdlib logging.
    structlog.get_logger("test").info("settings", settings=settings, url=settings.sqlalchemy_url)
    with pytest.raises(DatabaseUnavailable):
        await database.start()
    out, err = capsys.readouterr()
    assert "database starting" in out + err
    assert_no_password(out + err)
    assert_no_password(caplog.text)


# -- one clear line per mistake: file, key, reason ------------------------------------------


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    return info.value


def test_unknown_driver_names_file_key_and_allowed_drivers(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", '[database]\ndriver = "mysql+aiomysql"\n')

    error = config_error(path)

    assert error.key == "driver"
    assert "[database] driver" in str(error)
    assert "mysql+aiomysql" in str(error)
    assert "postgresql+asyncpg" in str(error)


def test_unknown_driver_in_url_names_file_key_and_reason(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", '[database]\nurl = "mysql://u@h/db"\n')

    error = config_error(path)

    assert error.key == "url"
    assert "[database] url" in str(error)
    assert "unsupported driver" in str(error)


def test_wrong_type_names_file_key_and_value(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.toml", '[database]\ndriver = "postgresql+asyncpg"\nport = "abc"\n'
    )

    error = config_error(path)

    assert error.key == "port"
    assert error.source == str(path)
    assert "[database] port" in str(error)
    assert "integer" in str(error)
    assert "'abc'" in str(error)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.toml", '[database]\ndriver = "postgresql+asyncpg"\nport = = 5432\n'
    )

    error = config_error(path)

    assert "TOML syntax error" in str(error)
    assert "line 3" in str(error)


def test_config_file_env_naming_a_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "config.toml"
    monkeypatch.setenv("CONFIG_FILE", str(missing))

    with pytest.raises(ConfigError) as info:
        load_settings()

    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message
    assert "not found" in message
    assert "CONFIG_FILE" in message


def test_config_file_argument_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"

    error = config_error(missing)

    assert "not found" in str(error)


def test_missing_default_config_toml_is_not_an_error() -> None:
    assert load_settings().driver == "sqlite+aiosqlite"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", '[database]\nhots = "db.example"\n')

    error = config_error(path)

    assert error.key == "hots"
    assert "[database] hots" in str(error)
    assert "unknown key" in str(error)


def test_database_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.toml", 'database = "app_db"\n')

    error = config_error(path)

    assert "[database] must be a table" in str(error)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE__PORT", "abc")

    with pytest.raises(ConfigError) as info:
        load_settings(driver="postgresql+asyncpg")

    message = str(info.value)
    assert "\n" not in message
    assert "DATABASE__PORT" in message
    assert "integer" in message


def test_bad_argument_names_the_argument() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(pool_size=0)

    assert "argument pool_size" in str(info.value)


def test_password_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.toml",
        f'[database]\ndriver = "postgresql+asyncpg"\npassword = ["{PASSWORD}"]\n',
    )

    error = config_error(path)

    assert "[database] password" in str(error)
    assert_no_password(str(error))


@pytest.mark.parametrize(
    "url",
    [
        # The password pasted into the URL without percent-encoding.
        f"postgresql+asyncpg://app:{PASSWORD}@db:5432/app_db",
        "postgresql+asyncpg://app:p@ss:w0rd1234@db/app_db",
        "not a url p@ss:w/rd%",
    ],
)
def test_malformed_url_is_refused_without_echoing_it(tmp_path: Path, url: str) -> None:
    path = write_config(tmp_path / "config.toml", f'[database]\nurl = "{url}"\n')

    error = config_error(path)

    assert "[database] url" in str(error)
    assert_no_password(str(error))
    for fragment in ("w/rd", "w0rd1234", ":w"):
        assert fragment not in str(error)
