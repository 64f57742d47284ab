"""The environment of a child process that runs code of this checkout.

``app`` and the test modules are not installed (the wheel holds ``db_manager`` only): a child
that runs ``python -m app``, ``uvicorn app.main:create_app`` or a test module such as
``tests.faults.faultapp`` finds them through the repository root on ``PYTHONPATH``, whatever
its working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "child_env"]

REPO_ROOT = Path(__file__).resolve().parents[2]

# Settings of the app under test: a child gets only those its test passes.
_APP_SETTING_PREFIXES = ("DATABASE__", "BOT__", "APP__")


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without the app's settings (``DATABASE__*``, ``BOT__*``,
    ``APP__*``, ``CONFIG_FILE``), the repository root first on ``PYTHONPATH``, then ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(_APP_SETTING_PREFIXES) and name != "CONFIG_FILE"
    }
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *([inherited] if inherited else [])])
    env.update(extra)
    return env
