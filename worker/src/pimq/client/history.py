"""Job history: every ``pimq run`` in a small SQLite database the student owns.

``$XDG_STATE_HOME/pimq/history.sqlite`` (``~/.local/state/pimq/history.sqlite``),
mode 0600 in a 0700 directory. A run is recorded when it starts (status
``running``, with its pid) and updated when it ends (``ok``, ``failed``,
``timeout``, ``stopped`` (by the teacher), ``interrupted``, ``unreachable`` or
``error``, with the exit code).
A run whose process vanished without an update (killed) reads as ``killed``.

Several ``pimq run`` of one student may write at once: the database is in WAL
mode with a busy timeout, and every write is one short transaction. The
history stays within a size bound: after every finished job the oldest jobs
are pruned until at most :data:`MAX_JOBS` remain and their stored results
take at most :data:`MAX_BYTES`; a single result larger than
:data:`MAX_RESULT_BYTES` is not stored (the row says so).

Writing history never fails a job: a database that cannot be written is
reported once on stderr and the job goes on.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pimq.errors import UsageError

MAX_JOBS = 1000
MAX_BYTES = 32 * 1024 * 1024
MAX_RESULT_BYTES = 4 * 1024 * 1024
BUSY_TIMEOUT_MS = 15_000

#: exit code -> status word
STATUS = {
    0: "ok",
    1: "failed",
    2: "error",
    3: "unreachable",
    4: "timeout",
    5: "stopped",
    130: "interrupted",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,            -- JSON list: the arguments after KIND
    params TEXT NOT NULL,          -- JSON object: the job's parameters
    vhost TEXT NOT NULL,
    broker TEXT NOT NULL,          -- host:port
    started REAL NOT NULL,         -- unix time
    pid INTEGER NOT NULL,
    status TEXT NOT NULL,          -- running, ok, failed, timeout, interrupted, ...
    exit_code INTEGER,
    error TEXT,
    shards INTEGER,
    done_shards INTEGER,
    wall_seconds REAL,
    compute_seconds REAL,
    workers TEXT,                  -- JSON {worker: {"shards": n, "seconds": s}}
    duplicates INTEGER,
    result TEXT,                   -- JSON, NULL when not stored
    result_bytes INTEGER NOT NULL DEFAULT 0,
    result_dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_started ON jobs (started);
"""


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "pimq" / "history.sqlite"


def _create_private(path: Path) -> None:
    """The directory 0700 and the database file 0600, before SQLite opens it.

    SQLite creates its ``-wal`` and ``-shm`` files with the database's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@contextmanager
def opened(path: Path | None = None, create: bool = True) -> Iterator[sqlite3.Connection]:
    path = path or history_path()
    if create:
        _create_private(path)
    elif not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if create:
            # auto_vacuum only takes effect on an empty database: set it first
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
        conn.row_factory = sqlite3.Row
        yield conn
    finally:
        conn.close()


def status_of(exit_code: int) -> str:
    return STATUS.get(exit_code, "error")


def per_worker(results: dict[int, Any]) -> dict[str, dict[str, float]]:
    """{worker: {"shards": n, "seconds": compute}} from the kept shard results."""
    out: dict[str, dict[str, float]] = {}
    for r in results.values():
        entry = out.setdefault(r.worker or "?", {"shards": 0, "seconds": 0.0})
        entry["shards"] += 1
        entry["seconds"] = round(entry["seconds"] + r.seconds, 6)
    return dict(sorted(out.items()))


class Recorder:
    """One run's row. Every method swallows database errors (one warning)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or history_path()
        self.warned = False

    def _warn(self, exc: BaseException) -> None:
        if not self.warned:
            self.warned = True
            print(f"pimq: job history not written ({self.path}: {exc})", file=sys.stderr)

    def start(
        self, job: str, kind: str, args: list[str], params: dict, vhost: str, broker: str
    ) -> None:
        try:
            with opened(self.path) as db:
                db.execute(
                    "INSERT OR REPLACE INTO jobs (job, kind, args, params, vhost, broker,"
                    " started, pid, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                    (
                        job,
                        kind,
                        json.dumps(args),
                        json.dumps(params, sort_keys=True),
                        vhost,
                        broker,
                        time.time(),
                        os.getpid(),
                    ),
                )
        except (sqlite3.Error, OSError) as exc:
            self._warn(exc)

    def finish(
        self,
        job: str,
        exit_code: int,
        *,
        error: str | None = None,
        shards: int | None = None,
        results: dict[int, Any] | None = None,
        wall: float | None = None,
        duplicates: int = 0,
        result: Any = None,
        has_result: bool = False,
        max_jobs: int = MAX_JOBS,
        max_bytes: int = MAX_BYTES,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        results = results or {}
        text: str | None = None
        dropped = 0
        if has_result:
            text = json.dumps(result)
            if len(text.encode()) > max_result_bytes:
                text, dropped = None, 1
        try:
            with opened(self.path) as db:
                db.execute(
                    "UPDATE jobs SET status = ?, exit_code = ?, error = ?, shards = ?,"
                    " done_shards = ?, wall_seconds = ?, compute_seconds = ?, workers = ?,"
                    " duplicates = ?, result = ?, result_bytes = ?, result_dropped = ?"
                    " WHERE job = ?",
                    (
                        status_of(exit_code),
                        exit_code,
                        error,
                        shards,
                        len(results),
                        None if wall is None else round(wall, 6),
                        round(sum(r.seconds for r in results.values()), 6),
                        json.dumps(per_worker(results)),
                        duplicates,
                        text,
                        len(text.encode()) if text else 0,
                        dropped,
                        job,
                    ),
                )
                prune(db, max_jobs, max_bytes)
        except (sqlite3.Error, OSError) as exc:
            self._warn(exc)


def prune(db: sqlite3.Connection, max_jobs: int, max_bytes: int) -> int:
    """Delete the oldest jobs beyond the bounds; the number deleted."""
    deleted = 0
    db.execute("BEGIN IMMEDIATE")
    try:
        cur = db.execute(
            "DELETE FROM jobs WHERE job IN (SELECT job FROM jobs ORDER BY started DESC"
            " LIMIT -1 OFFSET ?)",
            (max_jobs,),
        )
        deleted += cur.rowcount
        # newest first, the running total of result bytes; drop the rows past the bound
        # (the newest job is always kept)
        rows = db.execute("SELECT job, result_bytes FROM jobs ORDER BY started DESC").fetchall()
        total, drop = 0, []
        for i, (job, size) in enumerate(rows):
            total += size
            if total > max_bytes and i > 0:
                drop.append(job)
        if drop:
            db.executemany("DELETE FROM jobs WHERE job = ?", [(j,) for j in drop])
            deleted += len(drop)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if deleted:
        db.execute("PRAGMA incremental_vacuum")
    return deleted


@dataclass(frozen=True)
class Entry:
    row: dict[str, Any]

    @property
    def job(self) -> str:
        return self.row["job"]

    @property
    def status(self) -> str:
        status = self.row["status"]
        if status == "running" and not _alive(self.row["pid"]):
            return "killed"
        return status

    def doc(self) -> dict[str, Any]:
        """The job as JSON: the same keys as ``pimq run --json``, plus the history's."""
        r = self.row
        workers = json.loads(r["workers"]) if r["workers"] else {}
        wall, compute = r["wall_seconds"], r["compute_seconds"]
        return {
            "job": r["job"],
            "kind": r["kind"],
            "args": json.loads(r["args"]),
            "params": json.loads(r["params"]),
            "vhost": r["vhost"],
            "broker": r["broker"],
            "started": r["started"],
            "status": self.status,
            "exit_code": r["exit_code"],
            "error": r["error"],
            "shards": r["shards"],
            "done_shards": r["done_shards"],
            "wall_seconds": wall,
            "compute_seconds": compute,
            "parallelism": round(compute / wall, 3) if wall and compute is not None else None,
            "workers": workers,
            "duplicates": r["duplicates"],
            "result": json.loads(r["result"]) if r["result"] is not None else None,
            "result_stored": r["result"] is not None,
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _read(sql: str, params: tuple = (), path: Path | None = None) -> list[Entry]:
    try:
        with opened(path, create=False) as db:
            return [Entry(dict(row)) for row in db.execute(sql, params)]
    except FileNotFoundError:
        return []
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read the job history {path or history_path()}: {exc}") from None


def recent(limit: int | None = 20, path: Path | None = None) -> list[Entry]:
    """The newest jobs first."""
    return _read(
        "SELECT * FROM jobs ORDER BY started DESC LIMIT ?",
        (-1 if limit is None else limit,),
        path,
    )


def find(job: str, path: Path | None = None) -> Entry:
    """One job by its id, a unique prefix of it, or ``last``."""
    if job == "last":
        found = recent(1, path)
    else:
        if not job or not all(c in "0123456789abcdef" for c in job):
            raise UsageError(f"not a job id: {job!r} (pimq history lists them)")
        found = _read(
            "SELECT * FROM jobs WHERE substr(job, 1, ?) = ? ORDER BY started DESC LIMIT 2",
            (len(job), job),
            path,
        )
    if not found:
        raise UsageError(f"no job {job!r} in your history (pimq history lists them)")
    if len(found) > 1:
        raise UsageError(f"job id {job!r} is ambiguous: give more of it")
    return found[0]
