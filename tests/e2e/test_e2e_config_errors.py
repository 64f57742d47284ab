"""``python -m app run`` with a broken config: exit status 2 and one ``error:`` line on stderr
that names the mistake and holds no secret (the cases reported in issue 11).

Slow: each child imports the whole app (about 6 s of CPU, 10 s of wall time on a loaded machine).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import child_env

TOKEN = "123456789:AAHsecretTokenPart0123456789abcdef"
PASSWORD = "db-Secret-Passw0rd:42"


def run_app(cwd: Path, **env: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "app", "run"],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr


# The two cases reported, as reported (environment variables). Every other secret, form and
# validator is covered in-process by tests/unit/test_config_secrets.py: a child costs seconds.
CASES = {
    "bot token without webhook secret": (
        {"BOT__TOKEN": TOKEN},
        "[bot] (section): Value error, webhook_secret is required when token is set",
        (TOKEN, TOKEN.partition(":")[2]),
    ),
    "sqlite with a host and a password": (
        {"DATABASE__HOST": "db.example", "DATABASE__PASSWORD": PASSWORD},
        "[database] (section): Value error, sqlite+aiosqlite takes only `database`",
        (PASSWORD, PASSWORD.partition(":")[2]),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_config_error_is_one_line_without_the_secret(case: str, tmp_path: Path) -> None:
    env, expected, secrets = CASES[case]

    status, out, err = run_app(tmp_path, **env)

    assert status == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert expected in lines[0], err
    for secret in secrets:
        assert secret not in out + err


@pytest.mark.slow
def test_a_misspelled_section_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[databse]\ndriver = "postgresql+asyncpg"\nhost = "db.example"\n', encoding="utf-8"
    )

    status, out, err = run_app(tmp_path)

    assert status == 2, (out, err)
    assert err == (
        "error: config.toml: unknown section [databse]; known sections: [app], [bot], [database]\n"
    )
    assert not (tmp_path / "app.sqlite3").exists()  # it did not start on the default database
