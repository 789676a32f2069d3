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
