"""``log_format = "json"`` keeps exception tracebacks (issue 11, point 15), without locals.

Each case runs in a fresh interpreter: ``configure_logging`` sets up the process's logging
once, and the test process's own must stay as pytest has it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SECRET = "hunter2-local-secret"

PROGRAM = f"""
import logging
import structlog
from app.logs import configure_logging

configure_logging("INFO", "json")

def charge(password={SECRET!r}):
    raise ZeroDivisionError("boom in charge")

try:
    charge()
except ZeroDivisionError:
    structlog.get_logger("app.test").exception("structlog failure", update_id=7)
try:
    charge()
except ZeroDivisionError:
    logging.getLogger("stdlib.test").exception("stdlib failure")
"""


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("event", ["structlog failure", "stdlib failure"])
def test_json_lines_carry_the_exception_with_its_frames(
    lines: list[dict[str, Any]], event: str
) -> None:
    [line] = [line for line in lines if line["event"] == event]
    [exception] = line["exception"]
    assert exception["exc_type"] == "ZeroDivisionError"
    assert exception["exc_value"] == "boom in charge"
    assert [frame["name"] for frame in exception["frames"]][-1] == "charge"
    assert line["level"] == "error"


def test_json_tracebacks_show_no_locals(lines: list[dict[str, Any]]) -> None:
    assert len(lines) == 2
    for line in lines:
        assert SECRET not in json.dumps(line)
        for frame in line["exception"][0]["frames"]:
            assert "locals" not in frame


def test_console_tracebacks_never_show_frame_locals() -> None:
    """The console format (the default) prints the traceback plainly: a frame's locals (a
    password, a token) are not rendered, as structlog's rich formatter would."""
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.replace('"json"', '"console"')],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    assert "boom in charge" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert SECRET not in result.stderr
