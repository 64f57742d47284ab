"""Start uvicorn children quickly: one interpreter imports the app once, then forks per child.

Importing aiogram, FastAPI and SQLAlchemy costs seconds of CPU per interpreter (aiogram's
pydantic models alone ~3 s, far more on a loaded machine). The tests start seven app
processes; this server (``python -m tests.inbox_processes.forkserver``, started with
``child_env()``) imports everything once, single-threaded and before any event loop exists,
and then forks one child per request. Each child is a real uvicorn server of its own
(``uvicorn.run(..., factory=True)``), in a session of its own, its output in a log file, and
it handles signals exactly as ``python -m uvicorn`` does.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout::

    {"op": "spawn", "env": {...}, "port": 8123, "log": "/tmp/x.log"}  -> {"pid": 4242}
    {"op": "poll", "pid": 4242}   -> {"returncode": null | 0 | -9 ...}  (reaps the child)
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from typing import Any

# The heavy imports, done once here and inherited by every child.
import asyncpg  # noqa: F401
import sqlalchemy.dialects.postgresql.asyncpg  # noqa: F401
import uvicorn
import uvicorn.lifespan.on
import uvicorn.loops.asyncio
import uvicorn.protocols.http.h11_impl
import uvicorn.protocols.websockets.auto

import tests.inbox_processes.inbox_app  # noqa: F401

FACTORY = "tests.inbox_processes.inbox_app:create_app"


def _child(env: dict[str, str], port: int, log: str) -> None:
    os.setsid()
    random.seed()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.environ.update(env)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    code = 0
    try:
        uvicorn.run(
            FACTORY,
            factory=True,
            host="127.0.0.1",
            port=port,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    exited: dict[int, int] = {}
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        answer: dict[str, Any]
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(request["env"], int(request["port"]), request["log"])
            answer = {"pid": pid}
        elif request["op"] == "poll":
            pid = int(request["pid"])
            if pid not in exited:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    exited[pid] = os.waitstatus_to_exitcode(status)
            answer = {"returncode": exited.get(pid)}
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
