"""Measurement 2: throughput under load, server and load generator on different cores.

Each variant is served by its own process (``bench.serve``) pinned to core 0 with
``taskset``; ``wrk`` runs pinned to core 1 with a fixed number of connections. PostgreSQL
is not pinned (it is shared). Variants are interleaved over the rounds, the order reversed
every other round (A B C, C B A, A B C ...), so a slow drift of the machine (a checkpoint,
another process) cancels out of the per-round ratios instead of favouring whoever runs
first; every measured run is preceded by a short warm-up run on the same endpoint. Besides wrk's
figures, the server's own CPU time per request (``/proc/PID/stat``) and its peak RSS
(``VmHWM``) are recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Target
from bench.endpoints import SERVES, Endpoint
from tests.support.processes import child_env

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
SERVER_CPU = "0"
CLIENT_CPU = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadRun:
    variant: str
    endpoint: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_us: float  # server CPU time per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class LoadResults:
    rounds: int
    connections: int
    duration: float
    pinned: bool
    generator: str
    runs: list[LoadRun] = field(default_factory=list)
    peak_rss_kb: dict[str, int] = field(default_factory=dict)

    def of(self, variant: str, endpoint: str) -> list[LoadRun]:
        return [r for r in self.runs if r.variant == variant and r.endpoint == endpoint]

    def rps(self, variant: str, endpoint: str) -> float:
        return statistics.median(r.rps for r in self.of(variant, endpoint))

    def paired_ratio(self, variant: str, endpoint: str, reference: str, ref_endpoint: str) -> float:
        """Median over rounds of this variant's requests/s over the reference's."""
        mine, ref = self.of(variant, endpoint), self.of(reference, ref_endpoint)
        return statistics.median(a.rps / b.rps for a, b in zip(mine, ref, strict=True))


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if can_pin() else command


class Server:
    """One variant's server process."""

    def __init__(self, variant: str, target: Target) -> None:
        self.variant = variant
        self.port = free_port()
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            pinned(
                SERVER_CPU,
                [sys.executable, "-m", "bench.serve", variant, str(self.port), target.to_json()],
            ),
            cwd=root,
            env=child_env(),
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.variant} server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.variant} server did not listen within {timeout}s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def memory_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_wrk(
    port: int, endpoint: Endpoint, seconds: float, connections: int, update_base: int
) -> dict[str, float]:
    return run_wrk_args(port, endpoint.wrk_args(update_base), seconds, connections)


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def generator_name() -> str:
    return "wrk" if has_wrk() else "python fallback (bench/loadgen.py; wrk is not installed)"


def run_wrk_args(port: int, args: list[str], seconds: float, connections: int) -> dict[str, float]:
    """Run wrk (pinned to the client core) with ``bench/wrk.lua``; its JSON summary.

    Without wrk, the fallback generator ``bench.loadgen`` runs instead, pinned the same way.
    """
    if has_wrk():
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(WRK_SCRIPT),
            f"http://127.0.0.1:{port}",
            "--",
            *args,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(port),
            "--connections",
            str(connections),
            "--seconds",
            str(seconds),
            "--",
            *args,
        ]
    completed = subprocess.run(
        pinned(CLIENT_CPU, command),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
        cwd=Path(__file__).resolve().parent.parent,
        env=child_env(),
    )
    line = next(ln for ln in completed.stdout.splitlines() if ln.startswith("{"))
    data: dict[str, float] = json.loads(line)
    return data


class UpdateIds:
    """Fresh update_id ranges, so no webhook request is ever a duplicate."""

    def __init__(self) -> None:
        self._next = 20_000_000_000

    def take(self) -> int:
        self._next += 10_000_000
        return self._next


def measure_load(
    target: Target,
    *,
    rounds: int,
    duration: float,
    warmup: float,
    connections: int,
    variants: tuple[str, ...],
    log: bool = True,
) -> LoadResults:
    results = LoadResults(
        rounds=rounds,
        connections=connections,
        duration=duration,
        pinned=can_pin(),
        generator=generator_name(),
    )
    ids = UpdateIds()
    for round_no in range(rounds):
        for variant in variants if round_no % 2 == 0 else variants[::-1]:
            server = Server(variant, target)
            try:
                for endpoint in SERVES[variant]:
                    run_wrk(server.port, endpoint, warmup, connections, ids.take())
                    cpu_before = server.cpu_seconds()
                    data = run_wrk(server.port, endpoint, duration, connections, ids.take())
                    cpu_spent = server.cpu_seconds() - cpu_before
                    requests = int(data["requests"])
                    run = LoadRun(
                        variant=variant,
                        endpoint=endpoint.key,
                        requests=requests,
                        seconds=data["duration_us"] / 1e6,
                        errors=int(
                            data["status"]
                            + data["connect"]
                            + data["read"]
                            + data["write"]
                            + data["timeout"]
                        ),
                        p50_ms=data["p50_us"] / 1000,
                        p99_ms=data["p99_us"] / 1000,
                        server_cpu_us=cpu_spent / requests * 1e6 if requests else 0.0,
                    )
                    results.runs.append(run)
                    if log:
                        print(
                            f"  load round {round_no + 1}/{rounds} {variant:8} {endpoint.key:9} "
                            f"{run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                            f"  errors {run.errors}",
                            flush=True,
                        )
                peak = server.memory_kb("VmHWM")
                results.peak_rss_kb[variant] = max(results.peak_rss_kb.get(variant, 0), peak)
            finally:
                server.stop()
    return results
