"""Which jobs this account is running (so ``pimq status`` can show their queues).

Students have no management rights, so AMQP cannot list queues; each running
``pimq run`` leaves a small file ``$XDG_STATE_HOME/pimq/jobs/<job>``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def jobs_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "pimq" / "jobs"


def track_job(job: str, kind: str) -> None:
    try:
        directory = jobs_state_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (directory / job).write_text(f"{kind} {int(time.time())} {os.getpid()}\n")
    except OSError:
        pass


def untrack_job(job: str) -> None:
    try:
        (jobs_state_dir() / job).unlink()
    except OSError:
        pass


def tracked_jobs() -> list[tuple[str, str, int]]:
    """(job, kind, pid) of the jobs started from this account."""
    found = []
    try:
        entries = sorted(jobs_state_dir().iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            kind, _started, pid = entry.read_text().split()
            os.kill(int(pid), 0)
        except ProcessLookupError:  # that pimq run is gone (killed): forget it
            untrack_job(entry.name)
            continue
        except (OSError, ValueError):
            continue
        found.append((entry.name, kind, int(pid)))
    return found
