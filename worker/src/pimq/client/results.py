"""``pimq history`` and ``pimq result JOB``: past jobs, read back from the history."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from pimq import jobs
from pimq.client import history


def _when(started: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def show_history(limit: int | None, as_json: bool) -> int:
    entries = history.recent(limit)
    if as_json:
        json.dump([e.doc() for e in entries], sys.stdout)
        sys.stdout.write("\n")
        return 0
    if not entries:
        print("no jobs yet (every pimq run is recorded here)", file=sys.stderr)
        return 0
    print(
        f"{'job':<16}  {'started':<19}  {'kind':<10} {'status':<11} {'shards':>6} "
        f"{'wall s':>8} {'compute s':>9}  arguments"
    )
    for e in entries:
        d = e.doc()
        shards = "-" if d["shards"] is None else str(d["shards"])
        print(
            f"{d['job']:<16}  {_when(d['started'])}  {d['kind']:<10} {d['status']:<11} "
            f"{shards:>6} {_secs(d['wall_seconds']):>8} {_secs(d['compute_seconds']):>9}  "
            f"{' '.join(d['args'])}"
        )
    return 0


def _render(kind: str, result: Any, params: dict) -> str:
    try:
        return jobs.render(jobs.load(kind), result, params)
    except Exception:  # the kind is gone or changed: the stored JSON still says it
        return json.dumps(result)


def show_result(job: str, as_json: bool) -> int:
    """The result and timings of a past job; its exit code is the job's."""
    d = history.find(job).doc()
    code = d["exit_code"]
    if d["status"] in ("running", "killed"):
        code = 1 if d["status"] == "killed" else 0
    if as_json:
        json.dump(d, sys.stdout)
        sys.stdout.write("\n")
        return code or 0
    if d["status"] == "ok":
        if d["result_stored"]:
            print(_render(d["kind"], d["result"], d["params"]), flush=True)
        else:
            print(
                f"pimq: the result of job {d['job']} was too large to keep in the history",
                file=sys.stderr,
            )
    elif d["status"] == "running":
        print(f"pimq: job {d['job']} is still running", file=sys.stderr)
    else:
        why = f": {d['error']}" if d["error"] else ""
        print(f"pimq: job {d['job']} ended {d['status']}{why}", file=sys.stderr)
    err = sys.stderr
    print(f"job {d['job']}: {d['kind']} {' '.join(d['args'])}", file=err)
    print(f"started {_when(d['started'])}, status {d['status']}", file=err)
    if d["wall_seconds"] is not None:
        done = d["done_shards"]
        of = f"{done} of {d['shards']}" if done != d["shards"] else f"{d['shards']}"
        parallelism = (
            f", parallelism {d['parallelism']:.2f}x" if d["parallelism"] is not None else ""
        )
        print(
            f"{of} shard(s) in {d['wall_seconds']:.2f} s, "
            f"shard compute {d['compute_seconds']:.2f} s{parallelism}",
            file=err,
        )
        workers = ", ".join(
            f"{w} {v['shards']} ({v['seconds']:.2f} s)" for w, v in d["workers"].items()
        )
        print(f"shards per worker: {workers or '-'}", file=err)
    return code or 0
