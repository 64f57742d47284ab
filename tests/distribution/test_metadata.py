"""The Telegram table joins ``Base.metadata`` only for an app that uses the Telegram side."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import db_manager, db_manager.fastapi, db_manager.testing
from db_manager import Base
print("before", "db_manager__telegram_updates" in Base.metadata.tables)
print("aiogram", "aiogram" in sys.modules)
import db_manager.telegram
print("after", "db_manager__telegram_updates" in Base.metadata.tables)
"""

MIDDLEWARE_ONLY = """
import sys
import db_manager.telegram, db_manager.telegram.middleware, db_manager.telegram.store
import db_manager.telegram.lifespan, db_manager.telegram.settings
print(sorted(m for m in ("fastapi", "starlette") if m in sys.modules))
"""


def run(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.splitlines()


def test_http_only_app_has_no_telegram_table() -> None:
    lines = run(CHECK)
    assert "before False" in lines
    assert "aiogram False" in lines
    assert "after True" in lines


def test_telegram_modules_other_than_the_webhook_import_no_fastapi() -> None:
    assert run(MIDDLEWARE_ONLY) == ["[]"]
