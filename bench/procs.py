"""Child processes of the bench: each in its own process group, all killed at the end."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_live: list[subprocess.Popen] = []


def spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a long-lived helper (a worker) in its own process group, output to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _live.append(proc)
    return proc


def spawn_ready(
    cmd: Sequence[str],
    log: Path,
    ready: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.Popen:
    """:func:`spawn` with a fresh ``log``, then wait until the log says ``ready``."""
    log.write_text("")
    proc = spawn(cmd, log, env)
    wait_for_text(log, ready, 1, proc, timeout=timeout)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process (it may drain), then SIGKILL its whole group."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    if proc in _live:
        _live.remove(proc)


def stop_all() -> None:
    for proc in list(_live):
        stop(proc, timeout=5)


def wait_for_text(
    log: Path, needle: str, count: int, proc: subprocess.Popen, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if text.count(needle) >= count:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {needle!r} x{count} in {log}")


def run_json(
    cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[dict[str, Any], float]:
    """Run a client to completion; its last stdout line is JSON. Returns (doc, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    _live.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, timeout=1)
        raise RuntimeError(f"{' '.join(cmd)} took more than {timeout} s") from None
    wall = time.perf_counter() - start
    _live.remove(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
    lines = [line for line in out.splitlines() if line.strip()]
    return json.loads(lines[-1]), wall


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tree_cpu(pids: Sequence[int]) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by these processes, and by their descendants."""
    import psutil

    own = kids = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            t = root.cpu_times()
            own += t.user + t.system
            for p in root.children(recursive=True):
                try:
                    t = p.cpu_times()
                    kids += t.user + t.system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
    return own, kids


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the clients)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and all its descendants (the bench, broker, workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for p in me.children(recursive=True):
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def others_load(seconds: float = 1.0) -> float:
    """Cores kept busy by processes that are not the bench's, over ``seconds``."""
    b0, o0 = _busy_seconds(), _own_seconds()
    time.sleep(seconds)
    return max(0.0, (_busy_seconds() - b0) - (_own_seconds() - o0)) / seconds


class QuietGate:
    """Before each run, wait (within a budget) until other people's load is low."""

    def __init__(self, max_cores: float, per_run: float = 20.0, budget: float = 180.0) -> None:
        self.max_cores = max_cores
        self.per_run = per_run
        self.budget = budget
        self.waited = 0.0

    def wait(self) -> float:
        """Returns the other processes' load (cores) just before the run."""
        if self.max_cores <= 0:
            return others_load(0.5)
        start = time.monotonic()
        while True:
            load = others_load(1.0)
            spent = time.monotonic() - start
            if (
                load <= self.max_cores
                or spent >= self.per_run
                or self.waited + spent >= self.budget
            ):
                self.waited += spent
                return load
