"""The public API is what ``__all__`` says, and ``__all__`` says what exists."""

from __future__ import annotations

import importlib

import pytest

import db_manager

MODULES = [
    "db_manager",
    "db_manager.config",
    "db_manager.engine",
    "db_manager.base",
    "db_manager.uow",
    "db_manager.database",
    "db_manager.errors",
    "db_manager.services",
    "db_manager.cancellation",
    "db_manager.reader",
    "db_manager.fastapi",
    "db_manager.idempotency",
    "db_manager.fastapi_idempotency",
    "db_manager.replicas",
    "db_manager.positions",
    "db_manager.fastapi_replicas",
    "db_manager.telegram",
    "db_manager.telegram.settings",
    "db_manager.telegram.middleware",
    "db_manager.telegram.store",
    "db_manager.telegram.lifespan",
    "db_manager.telegram.webhook",
    "db_manager.telegram.current",
    "db_manager.telegram.fsm",
    "db_manager.telegram.inbox",
    "db_manager.telegram.outbox",
    "db_manager.telegram.worker",
    "db_manager.notify",
    "db_manager.drain",
    "db_manager.migrations",
    "db_manager.testing",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert missing == []


def test_top_level_exports_every_public_core_name() -> None:
    exported = set(db_manager.__all__)
    public = {
        name
        for name in vars(db_manager)
        if not name.startswith("_")
        and not isinstance(getattr(db_manager, name), type(db_manager))
        and name not in {"annotations"}
    }
    assert public == exported


def test_core_imports_neither_fastapi_nor_aiogram() -> None:
    import subprocess
    import sys

    code = (
        "import sys, db_manager; "
        "bad = [m for m in ('fastapi', 'aiogram', 'starlette') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("db_manager").joinpath("py.typed").is_file()
