"""The lifespan freezes the start-up heap for the garbage collector, once per process.

Each case runs in a fresh interpreter: the freeze is process-wide and happens once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import child_env

_CHILD = """
import asyncio, gc, json, sys, weakref
from fastapi import FastAPI
from db_manager import DatabaseSettings
from db_manager.fastapi import database_lifespan
from db_manager.heap import freeze_startup_heap

freeze = sys.argv[2] == "on"

class Node:
    pass

async def main():
    app = FastAPI()
    settings = DatabaseSettings(url="sqlite+aiosqlite:///" + sys.argv[1])
    before = gc.get_freeze_count()
    async with database_lifespan(settings, freeze_gc=freeze)(app):
        frozen = gc.get_freeze_count()
        # Garbage made after start-up is still collected: a cycle, then only a weak ref.
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        gc.collect()
        again = freeze_startup_heap() if freeze else None
    print(json.dumps({"before": before, "frozen": frozen, "cycle_collected": ref() is None,
                      "again": again}))

asyncio.run(main())
"""


def _run(tmp_path: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "heap.db"), mode],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_lifespan_freezes_the_start_up_heap_and_later_garbage_is_still_collected(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, "on")
    assert result["before"] == 0
    assert isinstance(result["frozen"], int) and result["frozen"] > 10_000  # the imports
    assert result["cycle_collected"] is True
    assert result["again"] == 0  # once per process


def test_freeze_gc_false_leaves_the_collector_alone(tmp_path: Path) -> None:
    result = _run(tmp_path, "off")
    assert result["frozen"] == 0
    assert result["cycle_collected"] is True
