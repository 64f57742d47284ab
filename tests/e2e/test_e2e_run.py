"""Acceptance 5: ``make run`` on a fresh clone serves /health/live and /health/ready.

``make run`` is ``.venv/bin/python -m app run --host 127.0.0.1 --port 8000`` after the
install step; the test runs that very command as a subprocess, in an empty directory with
no config file and none of the app's environment variables: the SQLite default, bot off.
A dry run of ``make`` checks that the Makefile still runs that command.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT, child_env

START_WITHIN = 30.0  # seconds until /health/ready answers 200 (imports are slow on a busy CI box)
STOP_WITHIN = 10.0


def wait_for_200(
    client: httpx.Client, url: str, process: subprocess.Popen[bytes], deadline: float
) -> httpx.Response:
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode} before {url} was up")
        try:
            response = client.get(url, timeout=2.0)
        except httpx.TransportError as exc:  # not listening yet
            last = exc
        else:
            if response.status_code == 200:
                return response
            last = f"{response.status_code} {response.text}"
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {START_WITHIN}s (last: {last!r})")


def test_python_m_app_run_with_no_config_serves_health_on_sqlite(tmp_path: Path) -> None:
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    port = free_port()
    log_path = tmp_path / "app.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--port", str(port)],
            cwd=workdir,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_WITHIN
        with httpx.Client(base_url=base) as client:
            live = wait_for_200(client, "/health/live", process, deadline)
            assert live.json() == {"status": "ok"}
            ready = wait_for_200(client, "/health/ready", process, deadline)
            assert ready.json()["database"]["status"] == "ok"
            # The defaults of a fresh clone: the bot is off, the API is off and says so.
            assert client.post("/webhook/telegram", json={}).status_code == 404
            api = client.get("/api/stats")
            assert api.status_code == 503
            assert "API is off" in api.json()["detail"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the app did not stop within 10 s of SIGINT") from None
    output = log_path.read_text(errors="replace")
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output
    # SQLite, in the working directory, as the defaults say.
    assert (workdir / "app.sqlite3").is_file(), output
    assert "sqlite+aiosqlite" in output
    assert "bot is off" in output


def make_dry_run(*args: str) -> list[str]:
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO_ROOT), "run", *args],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
        timeout=30,
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_runs_python_m_app_run() -> None:
    lines = make_dry_run()
    assert shlex.split(lines[-1]) == [
        ".venv/bin/python",
        "-m",
        "app",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
    ]
    # HOST and PORT reach the command.
    lines = make_dry_run("HOST=0.0.0.0", "PORT=8123")
    assert shlex.split(lines[-1])[-4:] == ["--host", "0.0.0.0", "--port", "8123"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_on_a_fresh_clone_creates_the_venv_and_installs_first(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # does not exist: as on a fresh clone
    lines = make_dry_run(f"VENV={venv}")
    joined = "\n".join(lines)
    assert f"-m venv {venv}" in joined
    assert f'{venv}/bin/python -m pip install -q -e ".[all,dev]"' in joined
    assert f"touch {venv}/.installed" in joined
    assert shlex.split(lines[-1]) == [
        f"{venv}/bin/python",
        "-m",
        "app",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
    ]
    # The install comes before the run.
    assert joined.index("pip install") < joined.index("-m app run")
