"""What the figures were measured on: CPU, memory, OS, the versions of every peer."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from pimq_fleet import PIMQ_PYTHON, REPO


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, Any]:
    import psutil

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    code = "import pika, sys; print(pika.__version__, sys.version.split()[0])"
    pika_runtime, py_runtime = _first_line([str(PIMQ_PYTHON), "-c", code]).split()
    import celery
    import pika

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python_runtime": py_runtime,
        "pika_runtime": pika_runtime,
        "python_bench": platform.python_version(),
        "pika_bench": pika.__version__,
        "celery": celery.__version__,
        "erlang": _first_line(["dpkg-query", "-W", "-f", "${Version}", "erlang-base"]),
        "load_start": os.getloadavg(),
        "git": _first_line(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
