"""Issue 3, acceptance 9-12: readiness through an outage, startup failure, shutdown, body limit.

* 9 - ``/health/ready`` answers 503 within 2 s while PostgreSQL is unreachable (a TCP proxy
  the test switches off: refused connections, then a server that accepts and never answers)
  and 200 again once it is back, with the same app.
* 10 - ``python -m app run`` with an unreachable database exits non-zero in bounded time with
  one line naming host:port/database and the reason, no traceback, no password.
* 11 - the engine is on ``app.state`` and is the service ``db_manager:engine``; after
  shutdown it is disposed (its pool is empty and PostgreSQL has no backend of ours left).
* 12 - a body over the limit gets 413, with ``Content-Length`` and chunked.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from db_manager import DatabaseSettings
from db_manager.fastapi import (
    ENGINE_SERVICE,
    UOW_FACTORY_SERVICE,
    ServiceRegistry,
    get_services,
)
from tests.support.pools import checked_out
from tests.support.ports import free_port
from tests.support.postgres import PG_HOST, PG_PORT, pg_backends, pg_settings, sqlite_settings
from tests.support.processes import child_env
from tests.support.proxy import TcpProxy
from tests.support.waiting import wait_for

from .fastapi_support import MAX_BODY_SIZE, build_app, in_process, names, on_uvicorn, thing_names

PASSWORD = "s3cret-p@ss:w/rd%"

# -- 9. readiness while PostgreSQL is away --------------------------------------------------------


@pytest.mark.postgres
async def test_ready_is_503_within_2s_while_postgres_is_unreachable_and_200_once_back(
    pg_database: str,
) -> None:
    async with TcpProxy(PG_HOST, PG_PORT) as proxy:
        # trust authentication ignores the password; it is there to be kept out of answers and logs
        settings = pg_settings(pg_database, port=proxy.port, password=PASSWORD)
        async with in_process(settings) as run:
            ready = await run.client.get("/health/ready")
            assert ready.status_code == 200
            body = ready.json()
            assert body["status"] == "ok" and body["database"]["status"] == "ok"
            assert isinstance(body["database"]["latency_ms"], int | float)
            assert (await run.client.post("/things", json={"name": "before"})).status_code == 201

            for outage in ("refuse", "blackhole"):
                await getattr(proxy, outage)()  # open connections are cut as well
                for _ in range(2):  # also once the pool has seen the failure
                    started = time.monotonic()
                    ready = await run.client.get("/health/ready")
                    elapsed = time.monotonic() - started
                    assert ready.status_code == 503, (outage, ready.text)
                    assert elapsed < 2.0, (outage, elapsed)
                    assert ready.headers["retry-after"]
                    assert ready.json()["database"]["status"] == "unavailable"
                    assert "reason" in ready.json()["database"]
                    assert PASSWORD not in ready.text
                assert (await run.client.get("/health/live")).status_code == 200

                if outage == "refuse":
                    # A request that needs the database gets a clean 503 too.
                    with capture_logs() as logs:
                        write = await run.client.post("/things", json={"name": "during"})
                    assert write.status_code == 503, write.text
                    errors = [e for e in logs if e["log_level"] == "error"]
                    assert [(e["event"], e["path"]) for e in errors] == [
                        ("database unavailable", "/things")
                    ]
                    assert PASSWORD not in repr(logs)
                    assert write.headers["retry-after"]
                    assert write.json()["error"] == "database_unavailable"

                await proxy.forward()

                async def ready_again() -> bool:
                    return (await run.client.get("/health/ready")).status_code == 200

                assert await wait_for(ready_again, timeout=5.0), outage

            # The same app (no restart) serves again.
            assert (await run.client.post("/things", json={"name": "after"})).status_code == 201
            assert await thing_names(settings) == {"before", "after"}
            assert checked_out(run.app) == 0


async def test_ready_does_not_hang_when_the_pool_is_exhausted(
    db_settings: DatabaseSettings,
) -> None:
    settings = db_settings.model_copy(update={"pool_size": 1, "max_overflow": 0})
    async with in_process(settings) as run:
        engine: AsyncEngine = run.app.state.engine
        async with engine.connect() as held:  # the only connection of the main pool
            assert held is not None
            started = time.monotonic()
            ready = await run.client.get("/health/ready")
            assert time.monotonic() - started < 2.0
            assert ready.status_code in (200, 503)


# -- 10. startup with an unreachable database -----------------------------------------------------


@dataclass
class Exited:
    code: int
    lines: list[tuple[float, str]]  # (seconds since the start, line) as the parent read them
    elapsed: float

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def when(self, text: str) -> float:
        return next(t for t, line in self.lines if text in line)


async def run_until_exit(args: list[str], env: dict[str, str], cwd: Path) -> Exited:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[tuple[float, str]] = []
    try:
        async with asyncio.timeout(60.0):
            while raw := await proc.stdout.readline():
                lines.append((time.monotonic() - started, raw.decode().rstrip("\n")))
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Exited(code, lines, time.monotonic() - started)


def startup_command(target: str) -> list[str]:
    """``app``: ``python -m app run``. ``test-app``: plain uvicorn on a minimal app made of
    db_manager.fastapi only (:func:`.fastapi_support.app_from_env`), so the adapter is covered
    whatever app/ does."""
    if target == "app":
        return [sys.executable, "-m", "app", "run", "--port", str(free_port())]
    return [
        *(
            sys.executable,
            "-m",
            "uvicorn",
            "tests.integration.fastapi.fastapi_support:app_from_env",
            "--factory",
        ),
        *("--port", str(free_port()), "--lifespan", "on"),
    ]


def startup_env(**database: str) -> dict[str, str]:
    return child_env(**{f"DATABASE__{key.upper()}": value for key, value in database.items()})


async def test_startup_with_unreachable_database_fails_fast_with_one_line(
    silent_port: int, tmp_path: Path
) -> None:
    """Four servers start at once (imports take seconds): the app against a port that
    refuses and one that accepts and never answers, the minimal test app (refused), and the
    test app with a broken setting."""
    cases = [
        ("app", "refusing", free_port()),
        ("app", "silent", silent_port),
        ("test-app", "refusing", free_port()),
    ]

    async def start(target: str, port: int) -> Exited:
        env = startup_env(
            driver="postgresql+asyncpg",
            host="127.0.0.1",
            port=str(port),
            database="app_db",
            user="app",
            password=PASSWORD,
            connect_timeout="1",
        )
        return await run_until_exit(startup_command(target), env, tmp_path)

    bad_setting = run_until_exit(
        startup_command("test-app"), startup_env(port="not-a-port"), tmp_path
    )
    *results, bad = await asyncio.gather(
        *(start(target, port) for target, _, port in cases), bad_setting
    )

    # A broken setting fails at start with one line too, naming the variable.
    assert bad.code != 0, bad.output
    assert "Traceback" not in bad.output, bad.output
    lines = [line for line in bad.output.splitlines() if "DATABASE__PORT" in line]
    assert len(lines) == 1, bad.output
    assert "ConfigError" in lines[0]

    for (target, server, port), exited in zip(cases, results, strict=True):
        output = exited.output
        case = f"{target}/{server} ({exited.elapsed:.1f} s):\n{output}"
        assert exited.code != 0, case
        # Bounded: from "Waiting for application startup" to the error line it is the
        # connect_timeout (1 s) plus a little; the whole run, imports included, is bounded
        # too (generously: four interpreters start at once on a possibly busy machine).
        waited = exited.when("cannot reach the database") - exited.when("application startup")
        assert waited < 1.0 + 2.0, case
        assert exited.elapsed < 30.0, case
        assert "Traceback" not in output, case
        assert PASSWORD not in output and "p%40ss" not in output, case
        lines = [line for line in output.splitlines() if "cannot reach the database" in line]
        assert len(lines) == 1, case
        [line] = lines
        assert f"127.0.0.1:{port}/app_db" in line, case
        reason = "Connection refused" if server == "refusing" else "did not answer within"
        assert reason in line, case


# -- 11. app.state, the service registry and shutdown ---------------------------------------------


async def test_engine_is_the_registered_service_and_is_disposed_at_shutdown(
    db_settings: DatabaseSettings,
) -> None:
    app = build_app(db_settings)
    assert not hasattr(app.state, "engine")  # nothing is built before the app starts

    async with in_process(db_settings, app) as run:
        engine = app.state.engine
        services = app.state.services
        assert isinstance(engine, AsyncEngine)
        assert isinstance(services, ServiceRegistry)
        assert get_services(app) is services
        assert services.get(ENGINE_SERVICE) is engine
        assert services.get(UOW_FACTORY_SERVICE) is app.state.uow_factory

        assert (await run.client.post("/things", json={"name": "x"})).status_code == 201
        pool = engine.pool
        assert pool.checkedin() >= 1  # an idle pooled connection, about to be closed
        if db_settings.dialect == "postgresql":
            assert len(await pg_backends(run.database)) >= 1

    assert ENGINE_SERVICE not in services
    assert pool.checkedin() == 0 and pool.checkedout() == 0  # disposed: all closed
    assert engine.pool is not pool  # dispose() swapped in a fresh, empty pool
    assert not app.state.database.started
    if db_settings.dialect == "postgresql":
        database = str(db_settings.database)

        async def no_backends() -> bool:
            return not await pg_backends(database)

        assert await wait_for(no_backends, timeout=2.0), await pg_backends(database)


# -- 12. the body-size limit ------------------------------------------------------------------------


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"x" * n
        sent += n


def json_body(name_length: int) -> bytes:
    return b'{"name": "' + b"n" * name_length + b'"}'


async def test_body_over_the_limit_gets_413_with_and_without_content_length(
    tmp_path: Path,
) -> None:
    """The limit is checked before any handler or database work: SQLite is enough."""
    db_settings = sqlite_settings(tmp_path / "limit.sqlite3")
    async with on_uvicorn(db_settings) as run:
        ok = await run.client.post(
            "/things", content=json_body(90), headers={"content-type": "application/json"}
        )
        assert ok.status_code == 201

        big = json_body(2 * MAX_BODY_SIZE)
        request = run.client.build_request(
            "POST", "/things", content=big, headers={"content-type": "application/json"}
        )
        assert request.headers["content-length"] == str(len(big))
        sized = await run.client.send(request)
        assert sized.status_code == 413, sized.text

        async def stream() -> AsyncIterator[bytes]:
            yield b'{"name": "'
            async for chunk in chunks(2 * MAX_BODY_SIZE):
                yield chunk
            yield b'"}'

        request = run.client.build_request(
            "POST", "/things", content=stream(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        chunked = await run.client.send(request)
        assert chunked.status_code == 413, chunked.text

        assert names(run.events, "flushed") == ["n" * 90]  # the handler never ran for them
        assert await thing_names(db_settings) == {"n" * 90}

    # The same limit through the in-process transport (no server in between).
    async with in_process(db_settings) as run:
        response = await run.client.post("/things", content=big)
        assert response.status_code == 413
