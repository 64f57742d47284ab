"""The wheel is the library: ``db_manager`` alone, its core dependencies, and its extras.

The wheel is built from a copy of the tree (the checkout stays clean). The slow cases install
it into fresh virtual environments: with no extras, the core works on SQLite and each
adapter refuses to import with one line naming its extra; with ``[fastapi,postgres]`` a
FastAPI app with ``UowDep`` serves a request against the real PostgreSQL, aiogram absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What never belongs in a wheel copy: the checkout's own build and tool state.
_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=_IGNORED)
    out = work / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("db_manager-*.whl")
    yield path


def test_wheel_holds_db_manager_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"db_manager"}
    assert "db_manager/py.typed" in names
    assert "db_manager/telegram/__init__.py" in names
    assert not [name for name in names if name.startswith("app/")]


def test_wheel_metadata_lists_core_dependencies_and_the_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    core = sorted(
        r.split(">")[0].split("[")[0].split(";")[0].strip().lower()
        for r in requires
        if "extra ==" not in r
    )
    assert core == [
        "aiosqlite",
        "anyio",
        "pydantic",
        "pydantic-settings",
        "sqlalchemy",
        "structlog",
    ]
    extras = {
        line.removeprefix("Provides-Extra: ")
        for line in metadata.splitlines()
        if line.startswith("Provides-Extra: ")
    }
    assert {"postgres", "fastapi", "aiogram", "migrations", "testing", "all"} <= extras


# -- fresh virtual environments ------------------------------------------------------------


class Venv:
    def __init__(self, path: Path) -> None:
        venv.create(path, with_pip=True, clear=True)
        self.python = str(path / "bin" / "python")

    def pip(self, *args: str) -> None:
        subprocess.run(
            [self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
            check=True,
            capture_output=True,
            timeout=600,
        )

    def installed(self) -> set[str]:
        out = subprocess.run(
            [self.python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        return {line.split("==")[0].lower().replace("_", "-") for line in out.splitlines() if line}

    def run(
        self, code: str, *, cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [self.python, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,  # an empty directory: the checkout is not importable from here
            env={**clean, **(env or {})},
        )


CORE_ONLY = """
    import asyncio, sys
    from sqlalchemy import text
    from db_manager import Database, DatabaseSettings

    async def main():
        database = Database(DatabaseSettings(database="core.sqlite3"))
        await database.start()
        try:
            async with database.uow_factory() as uow:
                await uow.session.execute(text("CREATE TABLE t (x INTEGER)"))
            async with database.uow_factory() as uow:
                await uow.session.execute(text("INSERT INTO t VALUES (1)"))
            try:
                async with database.uow_factory() as uow:
                    await uow.session.execute(text("INSERT INTO t VALUES (2)"))
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            async with database.uow_factory() as uow:
                rows = (await uow.session.execute(text("SELECT x FROM t"))).scalars().all()
        finally:
            await database.dispose()
        print("rows", list(rows))

    asyncio.run(main())
    for module in ("db_manager.fastapi", "db_manager.telegram", "db_manager.migrations",
                   "db_manager.testing"):
        try:
            __import__(module)
        except ImportError as exc:
            print(module, "->", exc)
        else:
            print(module, "-> imported")
    try:
        DatabaseSettings(driver="postgresql+asyncpg", host="localhost")
        from db_manager import create_engine
        create_engine(DatabaseSettings(driver="postgresql+asyncpg", host="localhost"))
    except ImportError as exc:
        print("postgres ->", exc)
"""

FASTAPI_APP = """
    import asyncio, os, httpx
    from fastapi import FastAPI
    from sqlalchemy import text
    from db_manager import DatabaseSettings
    from db_manager.fastapi import UowDep, database_lifespan

    settings = DatabaseSettings(url=os.environ["TEST_URL"])
    app = FastAPI(lifespan=database_lifespan(settings))

    @app.post("/rows/{value}", status_code=201)
    async def add(value: int, uow: UowDep) -> dict[str, int]:
        await uow.session.execute(text("INSERT INTO wheel_rows VALUES (:v)"), {"v": value})
        return {"value": value}

    async def main():
        async with app.router.lifespan_context(app):
            async with app.state.uow_factory() as uow:
                await uow.session.execute(text("CREATE TABLE wheel_rows (x INTEGER)"))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/rows/7")
            async with app.state.uow_factory() as uow:
                rows = (await uow.session.execute(text("SELECT x FROM wheel_rows"))).scalars().all()
        print(response.status_code, list(rows))

    asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.postgres
def test_installed_wheel_core_and_extras(wheel: Path, tmp_path: Path, pg_database: str) -> None:
    env = Venv(tmp_path / "venv")
    env.pip(str(wheel))
    result = env.run(CORE_ONLY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "rows [1]" in lines
    for module, extra, needed in [
        ("db_manager.fastapi", "fastapi", "fastapi"),
        ("db_manager.telegram", "aiogram", "aiogram"),
        ("db_manager.migrations", "migrations", "alembic"),
        ("db_manager.testing", "testing", "pytest"),
    ]:
        (line,) = [line for line in lines if line.startswith(f"{module} ->")]
        assert f"pip install 'db_manager[{extra}]'" in line, line
        assert needed in line, line
    assert any(
        "pip install 'db_manager[postgres]'" in line
        for line in lines
        if line.startswith("postgres ->")
    )
    installed = env.installed()
    assert not installed & {
        "aiogram",
        "aiohttp",
        "fastapi",
        "starlette",
        "uvicorn",
        "alembic",
        "asyncpg",
    }

    env.pip(f"{wheel}[fastapi,postgres]", "httpx")
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    served = env.run(FASTAPI_APP, cwd=tmp_path, env={"TEST_URL": url})
    assert served.returncode == 0, served.stderr
    assert served.stdout.splitlines()[-1] == "201 [7]"
    installed = env.installed()
    assert {"fastapi", "asyncpg"} <= installed
    assert not installed & {"aiogram", "aiohttp", "uvicorn", "alembic"}


BOT_WITHOUT_FASTAPI = """
    import asyncio, sys
    from aiogram import Bot, Dispatcher, Router
    from aiogram.types import Message, Update
    from sqlalchemy import text
    from db_manager import Base, Database, DatabaseSettings, UnitOfWork
    from db_manager.telegram import setup_dispatcher

    router = Router()

    @router.message()
    async def remember(message: Message, uow: UnitOfWork) -> None:
        await uow.session.execute(text("INSERT INTO seen VALUES (:t)"), {"t": message.text})

    async def main():
        database = Database(DatabaseSettings(database="bot.sqlite3"))
        await database.start()
        await database.create_all()  # the Telegram store's table joined Base.metadata
        async with database.uow_factory() as uow:
            await uow.session.execute(text("CREATE TABLE seen (t TEXT)"))
        dispatcher = Dispatcher()
        dispatcher.include_router(router)
        setup_dispatcher(dispatcher, database.uow_factory)
        bot = Bot("42:TEST")
        update = Update.model_validate({"update_id": 1, "message": {
            "message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": False, "first_name": "A"}, "text": "hello"}})
        for _ in range(2):  # the second delivery is a duplicate: applied once
            await dispatcher.feed_update(bot, update)
        async with database.uow_factory() as uow:
            rows = (await uow.session.execute(text("SELECT t FROM seen"))).scalars().all()
        await bot.session.close()
        await database.dispose()
        print("tables", sorted(Base.metadata.tables))
        print("rows", list(rows))
        print("frameworks", sorted(m for m in ("fastapi", "starlette") if m in sys.modules))

    asyncio.run(main())
    try:
        import db_manager.telegram.webhook
    except ImportError as exc:
        print("webhook ->", exc)
"""


@pytest.mark.slow
def test_telegram_middleware_runs_without_fastapi(wheel: Path, tmp_path: Path) -> None:
    env = Venv(tmp_path / "venv")
    env.pip(f"{wheel}[aiogram]")
    assert not env.installed() & {"fastapi", "starlette", "uvicorn"}
    result = env.run(BOT_WITHOUT_FASTAPI, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "tables ['db_manager__telegram_inbox', 'db_manager__telegram_updates']" in lines
    assert "rows ['hello']" in lines
    assert "frameworks []" in lines
    assert any(
        line.startswith("webhook ->") and "pip install 'db_manager[fastapi]'" in line
        for line in lines
    )
