"""pimq as the users run it: ``pimq worker`` processes and ``pimq run`` clients.

Everything goes through the runtime's own CLI (``python -m pimq``) in the
project's venv (``.venv``), with config files written like the playbook does
(student config mode 0600, worker config listing the vhosts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import run_json, spawn, stop, wait_for_text
from support.private_broker import Broker, Student

REPO = Path(__file__).resolve().parents[1]
PIMQ_PYTHON = Path(os.environ.get("PIMQ_PYTHON", REPO / ".venv" / "bin" / "python"))
#: Where the measured ``pimq`` package is imported from (see :func:`use_runtime`).
RUNTIME = {"src": REPO / "worker" / "src", "rev": "working tree"}


def use_runtime(rev: str | None, out: Path) -> str:
    """Measure the runtime as committed at ``rev`` instead of the working tree.

    The tree is shared with engineers who edit ``worker/`` while the bench
    runs; ``--runtime-rev HEAD`` takes a snapshot (``git archive``) under
    ``bench/out`` and puts it first on every pimq process's ``PYTHONPATH``.
    """
    if rev is None:
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "worker/src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        RUNTIME["rev"] = "working tree" + (" (with uncommitted changes)" if dirty else "")
        return str(RUNTIME["rev"])
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = out / f"runtime-{sha[:12]}"
    if not (dest / "worker" / "src" / "pimq").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", sha, "worker/src"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    RUNTIME["src"] = dest / "worker" / "src"
    RUNTIME["rev"] = sha[:12]
    return sha[:12]


def runtime_env(**extra: str) -> dict[str, str]:
    """The environment of a process that imports the measured ``pimq``."""
    path = str(RUNTIME["src"])
    if os.environ.get("PYTHONPATH"):  # e.g. a sitecustomize for an experiment
        path = f"{path}:{os.environ['PYTHONPATH']}"
    if "PYTHONPATH" in extra:
        path = f"{extra.pop('PYTHONPATH')}:{path}"
    return {**os.environ, "PYTHONPATH": path, **extra}


def pimq_env(out: Path, config: Path | None = None) -> dict[str, str]:
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    env = runtime_env(
        PYTHONUNBUFFERED="1", PIMQ_JOBS_DIR=str(jobs_dir), XDG_STATE_HOME=str(out / "state")
    )
    if config is not None:
        env["PIMQ_CONFIG"] = str(config)
    return env


def pimq_cmd(*args: str, profile: Path | None = None) -> list[str]:
    if profile is not None:
        return [str(PIMQ_PYTHON), "-m", "cProfile", "-o", str(profile), "-m", "pimq", *args]
    return [str(PIMQ_PYTHON), "-m", "pimq", *args]


@dataclass
class Fleet:
    """``count`` pimq worker processes, each with ``processes`` shard processes."""

    broker: Broker
    out: Path
    vhosts: list[str]
    count: int
    processes: int = 1
    quiet: bool = False
    profile: bool = False
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self) -> Fleet:
        self.out.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            cfg = self.broker.worker_config(
                self.vhosts, self.out / f"worker{i}.yaml", processes=self.processes
            )
            log = self.out / f"worker{i}.log"
            log.write_text("")
            extra = ["--quiet"] if self.quiet else []
            prof = self.out / f"worker{i}.prof" if self.profile else None
            cmd = pimq_cmd("worker", "--config", str(cfg), *extra, profile=prof)
            self.procs.append(spawn(cmd, log, pimq_env(self.out)))
            self.logs.append(log)
        for proc, log in zip(self.procs, self.logs, strict=True):
            for vhost in self.vhosts:
                wait_for_text(log, f"vhost {vhost}: connected", 1, proc, timeout=90)
        return self

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc, timeout=20)
        self.procs.clear()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_job(
    broker: Broker,
    student: Student,
    out: Path,
    kind: str,
    *args: str,
    profile: Path | None = None,
    timeout: float = 600,
) -> tuple[dict[str, Any], float]:
    """``pimq run KIND ARGS --json`` as the student: (the JSON summary, process wall time)."""
    cfg = broker.student_config(student, out / f"{student.vhost}.yaml")
    cmd = pimq_cmd("run", kind, *args, "--json", "--timeout", str(timeout), profile=profile)
    return run_json(cmd, pimq_env(out, cfg), timeout=timeout + 30)


if __name__ == "__main__":
    print(" ".join(pimq_cmd(*sys.argv[1:])))
