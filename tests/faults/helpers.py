"""Machinery of the fault suite: servers the tests start and stop, and a proxy that cuts COMMIT.

* :class:`PostgresServer` - a throwaway PostgreSQL cluster (``initdb`` into a temp dir, run as
  the ``postgres`` user when we are root), on a free loopback port; the shared server on 5432
  is never stopped.
* :class:`PgBouncer` - a real PgBouncer (Debian package ``pgbouncer``) on a free loopback port.
* :class:`UvicornProcess` - ``python -m uvicorn tests.faults.faultapp:create_app --factory`` in
  a subprocess (``--workers N``), configured through one environment variable.
* :class:`CommitCuttingProxy` - a TCP proxy that speaks just enough of the PostgreSQL wire
  protocol to see the client's ``COMMIT``: it delivers it to the server, waits for the server's
  reply, drops that reply and cuts the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from db_manager import DatabaseSettings
from tests.support.ports import free_port, port_open
from tests.support.postgres import PG_ADMIN_DB, PG_HOST, PG_PORT, PG_USER, pg_fetch
from tests.support.processes import child_env
from tests.support.served import Served

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PGBOUNCER = os.environ.get("TEST_PGBOUNCER", "pgbouncer")

APP_ENV = "FAULTS_APP"
FAULT_APP = "tests.faults.faultapp:create_app"


# -- small tools ---------------------------------------------------------------------------------


def faults_settings(
    database: str, *, host: str = PG_HOST, port: int = PG_PORT, **overrides: Any
) -> DatabaseSettings:
    """Settings for the fault app: its own ``application_name`` (to find its backends in
    ``pg_stat_activity``), tables created by the test, not by the app."""
    values: dict[str, Any] = {
        "driver": "postgresql+asyncpg",
        "host": host,
        "port": port,
        "user": PG_USER,
        "database": database,
        "connect_timeout": 3.0,
        "create_tables": False,
        "application_name": f"faults_{uuid.uuid4().hex[:10]}",
    }
    values.update(overrides)
    return DatabaseSettings(**values)


def settings_fields(settings: DatabaseSettings) -> dict[str, Any]:
    """The settings as plain JSON for a subprocess (the fault suite uses no passwords)."""
    assert settings.password is None and settings.url is None
    return settings.model_dump(mode="json", exclude={"password", "url"})


async def app_backends(
    application_name: str, *, host: str = PG_HOST, port: int = PG_PORT, admin_db: str = PG_ADMIN_DB
) -> list[asyncpg.Record]:
    """The server backends of the app (its connections), seen from an admin connection."""
    return await pg_fetch(
        "SELECT pid, state, xact_start, query FROM pg_stat_activity "
        "WHERE application_name = $1 AND pid <> pg_backend_pid() ORDER BY pid",
        application_name,
        host=host,
        port=port,
        database=admin_db,
    )


async def idle_in_transaction(
    database: str, *, port: int = PG_PORT, admin_db: str = PG_ADMIN_DB
) -> list[asyncpg.Record]:
    return await pg_fetch(
        "SELECT pid, application_name, state, query FROM pg_stat_activity "
        "WHERE datname = $1 AND state LIKE 'idle in transaction%'",
        database,
        port=port,
        database=admin_db,
    )


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: run them as the ``postgres`` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _own_for_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@asynccontextmanager
async def in_process(app: FastAPI, *, timeout: float = 30.0) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan plus an httpx client on ``ASGITransport``. App exceptions become 500
    answers, as a server would send them, instead of being raised into the test."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://faults", timeout=timeout) as client,
    ):
        yield client


# -- a PostgreSQL server of our own ------------------------------------------------------------


class PostgresServer:
    """A throwaway cluster in a temp dir on a free loopback port; ``stop()``/``start()`` it."""

    def __init__(self, bin_dir: Path = PG_BIN) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        _own_for_postgres(self.base)

    @staticmethod
    def available(bin_dir: Path = PG_BIN) -> str | None:
        """None if the server binaries and (as root) the ``postgres`` user exist; else why not."""
        for name in ("initdb", "pg_ctl", "postgres"):
            if not (bin_dir / name).is_file():
                return f"{bin_dir / name} not found (set TEST_PG_BIN)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "no 'postgres' user to run the server as"
            if shutil.which("runuser") is None:
                return "runuser not found"
        return None

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            _as_postgres([*args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{_tail(self.log)}"
            )

    def init(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base} "
            "-c fsync=off -c full_page_writes=off -c max_connections=120 -c shared_buffers=16MB"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)


# -- PgBouncer -------------------------------------------------------------------------------------


class PgBouncer:
    """A real PgBouncer in front of ``target_host:target_port`` on a free loopback port."""

    def __init__(
        self,
        target_host: str = PG_HOST,
        target_port: int = PG_PORT,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 2,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="faults-pgbouncer-"))
        self.log = self.base / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None
        _own_for_postgres(self.base)

    @staticmethod
    def executable() -> str | None:
        return shutil.which(PGBOUNCER) or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").is_file() else None
        )

    def start(self, timeout: float = 15) -> None:
        executable = self.executable()
        assert executable is not None, "pgbouncer is not installed (apt-get install pgbouncer)"
        users = self.base / "userlist.txt"
        users.write_text(f'"{PG_USER}" ""\n')
        ini = self.base / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.target_host} port={self.target_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            "unix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            f"max_db_connections = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log}\npidfile = {self.base / 'pgbouncer.pid'}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "server_check_delay = 0\n"
        )
        for path in (users, ini):
            _own_for_postgres(path)
        # As root, run it as the postgres user directly (not through runuser), so that our
        # signals reach PgBouncer itself.
        as_user: dict[str, Any] = (
            {"user": "postgres", "group": "postgres", "extra_groups": []}
            if os.geteuid() == 0
            else {}
        )
        self.process = subprocess.Popen(
            [executable, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.base,
            **as_user,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: PgBouncer's immediate shutdown
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)


# -- the app in a uvicorn subprocess ---------------------------------------------------------------


class UvicornProcess(Served):
    """``uvicorn tests.faults.faultapp:create_app --factory`` on a free port, ``workers``
    processes; :meth:`start` returns once every worker has answered ``/pid``."""

    def __init__(self, settings: DatabaseSettings, *, workers: int = 1, **options: Any) -> None:
        app_config = json.dumps({"settings": settings_fields(settings), **options})
        super().__init__(FAULT_APP, env={APP_ENV: app_config})
        self.settings = settings
        self.workers = workers
        self.worker_pids: set[int] = set()

    def start(self, timeout: float = 40) -> None:
        command = [
            sys.executable, "-m", "uvicorn", self.factory, "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=child_env(PYTHONUNBUFFERED="1", **self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() signals the group: the server and its workers
            )
        deadline = time.monotonic() + timeout
        pids: set[int] = set()
        while len(pids) < self.workers:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"uvicorn did not start {self.workers} workers:\n{self.output()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                # A fresh connection each time, so the kernel may hand it to any worker.
                answer = httpx.get(f"{self.base_url}/pid", timeout=2)
                if answer.status_code == 200:
                    pids.add(int(answer.json()["pid"]))
                    continue
            time.sleep(0.1)
        self.worker_pids = pids

    def cleanup(self) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)

    def pool(self) -> dict[str, int]:
        """The pool of the worker that answers (use with ``workers=1``)."""
        answer = httpx.get(f"{self.base_url}/pool", timeout=5)
        answer.raise_for_status()
        return dict(answer.json())


# -- a proxy that cuts the connection after delivering COMMIT -----------------------------------

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def _is_commit(sql: bytes) -> bool:
    return sql.rstrip(b"\0").strip().rstrip(b";").strip().upper() in (b"COMMIT", b"END")


class CommitCuttingProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL, parsing what the client sends.

    While armed (``arm(n)``), the next ``n`` COMMITs are each delivered to the server (a simple
    ``Query`` message, which is what asyncpg sends for ``Transaction.commit()``, or a
    ``Parse`` of ``COMMIT`` followed by ``Sync`` in the extended protocol); the proxy then waits
    for the server's reply, drops it, and cuts both sides of that connection. The server has
    committed; the client never hears so.
    """

    def __init__(self, target_host: str = PG_HOST, target_port: int = PG_PORT) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.armed = 0
        self.commits_seen = 0
        self.cuts = 0
        self.replies_dropped = 0
        self.messages: list[tuple[str, str]] = []  # (type, text) of the last messages, for asserts
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def arm(self, count: int = 1) -> None:
        self.armed += count

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _note(self, kind: str, text: str) -> None:
        self.messages.append((kind, text))
        del self.messages[:-200]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._transports.add(writer.transport)
        up_writer: asyncio.StreamWriter | None = None
        try:
            # Startup: answer SSL/GSS requests ourselves ("N": go on in plain text), so the
            # rest of the conversation is readable; then pass the startup message on.
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                payload = await reader.readexactly(size - 4)
                code = int.from_bytes(payload[:4], "big")
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    writer.write(b"N")
                    await writer.drain()
                    continue
                startup = size.to_bytes(4, "big") + payload
                break
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._transports.add(up_writer.transport)
            up_writer.write(startup)
            await up_writer.drain()
            state = _Conversation()
            downstream = asyncio.create_task(self._server_to_client(up_reader, writer, state))
            upstream = asyncio.create_task(self._client_to_server(reader, up_writer, state))
            self._tasks.update((downstream, upstream))
            try:
                await asyncio.wait({downstream, upstream}, return_when=asyncio.FIRST_COMPLETED)
                if state.cutting:
                    # Let the server's answer to COMMIT arrive (it is dropped), then cut.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(state.reply_dropped.wait(), 10)
                    self.cuts += 1
            finally:
                for pump in (downstream, upstream):
                    pump.cancel()
                await asyncio.gather(downstream, upstream, return_exceptions=True)
                self._tasks.difference_update((downstream, upstream))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
                    self._transports.discard(w.transport)
            self._tasks.discard(task)

    async def _client_to_server(
        self, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, state: _Conversation
    ) -> None:
        pending_commit = False
        while True:
            header = await reader.readexactly(5)
            kind = header[:1]
            body = await reader.readexactly(int.from_bytes(header[1:5], "big") - 4)
            cut_now = False
            if kind == b"Q":
                text = body.rstrip(b"\0")
                self._note("Q", text.decode(errors="replace")[:80])
                if _is_commit(text):
                    self.commits_seen += 1
                    if self.armed > 0:
                        self.armed -= 1
                        cut_now = True
            elif kind == b"P":
                _name, _, rest = body.partition(b"\0")
                text = rest.partition(b"\0")[0]
                self._note("P", text.decode(errors="replace")[:80])
                if _is_commit(text):
                    self.commits_seen += 1
                    if self.armed > 0:
                        self.armed -= 1
                        pending_commit = True
            elif kind == b"S" and pending_commit:
                cut_now = True
            if cut_now:
                # From here on nothing the server says reaches the client.
                state.cutting = True
            up_writer.write(header + body)
            await up_writer.drain()
            if cut_now:
                return

    async def _server_to_client(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Conversation
    ) -> None:
        while data := await up_reader.read(65536):
            if state.cutting:
                self.replies_dropped += 1
                state.reply_dropped.set()
                return
            writer.write(data)
            await writer.drain()


class _Conversation:
    __slots__ = ("cutting", "reply_dropped")

    def __init__(self) -> None:
        self.cutting = False
        self.reply_dropped = asyncio.Event()
