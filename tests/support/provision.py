"""The simulated room provisioned once per run of the suites, and the record of it.

``make test`` runs the harness, classroom and chaos suites one after the other,
each its own pytest process, on one room. Converging ``playbooks/site.yml`` is
the slowest thing any of them does, and what the classroom suite checks about
it (a first run at -vvv with ``ps`` sampled on every node, a second run that
changes nothing, a ``--check --diff`` run) is what the chaos suite's secrets
audit reads as well. So the first suite of a run converges and writes down what
it saw; a later suite of the same run reads that record back instead of
converging again.

A record is reused only when all of these hold, else the room is converged anew:

- the same run: ``PIMQ_RUN`` is set (the Makefile sets it once per ``make``
  invocation, the test runner once for ``make test``) and is the record's;
- the same room: the inventory's files and every node's container are the ones
  the record names (a room brought down and up again is a new room);
- the same state: what provisioning manages (vhosts, users, rights, limits,
  accounts, config files, workers' vhosts: ``nodes.room_state``) and the
  generated passwords are as the converge left them (the TLS certificates may
  have been renewed by a test: the room is still the one provisioned). A suite
  that broke the room and could not mend it leaves a later suite a freshly
  converged room, not its mess; the reason says what changed.

The record lives in ``.classroom/<prefix>/provisioned/`` (git-ignored; removed
with the room by ``classroom.py down``). It holds no secret: the outputs and the
command lines that the secrets tests check for passwords, and digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support import nodes
from support.jobs import wait_worker_active

RECORD = nodes.STATE / "provisioned"
RUN_ENV = "PIMQ_RUN"


@dataclass
class Provisioning:
    """site.yml converged on the room: the three runs, the ``ps`` samples of the first."""

    first: nodes.PlaybookRun  # at -vvv, ``ps`` sampled on every node throughout
    second: nodes.PlaybookRun  # must change nothing
    check: nodes.PlaybookRun  # --check --diff: must change and fail nothing
    sampler: nodes.PsSampler
    runtime_source: Path  # the snapshot of worker/ the wheel is built from, all run long
    reused: bool  # True: converged by an earlier suite of this run, found unchanged
    reason: str  # why it was converged now, or whose record it is

    @property
    def extra_vars(self) -> dict[str, str]:
        """What every later site.yml run on this room passes, so the wheel stays the one
        the room was provisioned with even while someone edits worker/."""
        return {"pimq_runtime_source": str(self.runtime_source)}


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
            h.update(f.read_bytes() if f.exists() else b"<absent>")
    return h.hexdigest()


def _containers(room: nodes.Room) -> dict[str, str]:
    ids = {}
    for node in room.nodes:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.Id}}", nodes.container(node)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        ids[node] = out.stdout.strip()
    return ids


def fingerprint(room: nodes.Room) -> dict[str, object]:
    """What must be the same for a record to describe this room in this run."""
    inventory = nodes.INVENTORY
    return {
        "run": os.environ.get(RUN_ENV, ""),
        "inventory": str(inventory),
        "inventory_files": _digest(inventory / "hosts.yml", inventory / "group_vars"),
        "containers": _containers(room),
    }


def _passwords() -> dict[str, str]:
    """A digest per generated password file (the room's secrets; its TLS certificates
    are left out: a test may renew them, and the room is still the one provisioned)."""
    base = nodes.INVENTORY / "credentials"
    return {
        str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*.txt"))
        if "tls" not in p.relative_to(base).parts
    }


def _state(room: nodes.Room) -> dict[str, object]:
    return {"room_state": sorted(nodes.room_state(room)), "credentials": _passwords()}


def _difference(then: dict, now: dict) -> str:
    """What changed since the record, in a few words (no secret: names and digests only)."""
    parts = []
    gone = sorted(set(then["room_state"]) - set(now["room_state"]))
    new = sorted(set(now["room_state"]) - set(then["room_state"]))
    if gone or new:
        parts.append(f"managed state: {len(gone)} gone {gone[:3]}, {len(new)} new {new[:3]}")
    files = sorted(k for k in {*then["credentials"], *now["credentials"]}
                   if then["credentials"].get(k) != now["credentials"].get(k))  # fmt: skip
    if files:
        parts.append(f"credentials changed: {files[:5]}")
    return "; ".join(parts)


def _save_run(run: nodes.PlaybookRun, name: str) -> dict[str, object]:
    (RECORD / f"{name}.log").write_text(run.output)
    return {"args": run.args, "rc": run.rc, "seconds": run.seconds}


def _load_run(doc: dict, name: str) -> nodes.PlaybookRun:
    output = (RECORD / f"{name}.log").read_text()
    return nodes.PlaybookRun(doc["args"], doc["rc"], output, doc["seconds"])


def _snapshot_worker() -> Path:
    """A copy of worker/ for the whole run: the wheel stays byte-identical between
    the run's site.yml runs even while someone edits worker/."""
    dst = RECORD / "worker"
    shutil.copytree(
        nodes.REPO / "worker",
        dst,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist"),
    )
    return dst


def why_not_reuse(room: nodes.Room) -> str | None:
    """None if the record describes this room in this run; else the reason it does not."""
    record = RECORD / "record.json"
    if not os.environ.get(RUN_ENV):
        return f"{RUN_ENV} is not set (a run of its own)"
    if not record.exists():
        return "first suite of this run to need it"
    doc = json.loads(record.read_text())
    if not doc.get("complete"):
        return "the record's converge did not complete"
    here = fingerprint(room)
    for key, value in doc["fingerprint"].items():
        if here.get(key) != value:
            return f"the record is of another {key}"
    now = _state(room)
    if now != doc["state"]:
        changed = _difference(doc["state"], now)
        return f"the room is no longer as provisioned (an earlier suite changed it: {changed})"
    return None


def load() -> Provisioning:
    doc = json.loads((RECORD / "record.json").read_text())
    return Provisioning(
        first=_load_run(doc["runs"]["first"], "first"),
        second=_load_run(doc["runs"]["second"], "second"),
        check=_load_run(doc["runs"]["check"], "check"),
        sampler=nodes.PsSampler.load(RECORD / "ps.json"),
        runtime_source=RECORD / "worker",
        reused=True,
        reason=f"converged at {doc['when']} by {doc['by']}, found unchanged",
    )


def converge(room: nodes.Room, by: str, reason: str) -> Provisioning:
    """Converge site.yml (-vvv under ``ps`` sampling, again, --check --diff) and record it.

    A first run that fails is recorded as incomplete (its output kept for the
    reader) and raised as an AssertionError with the output's tail.
    """
    shutil.rmtree(RECORD, ignore_errors=True)
    RECORD.mkdir(parents=True, mode=0o700)
    source = _snapshot_worker()
    extra = {"pimq_runtime_source": str(source)}
    doc: dict = {"fingerprint": fingerprint(room), "by": by, "complete": False, "runs": {}}
    doc["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with nodes.PsSampler(room.nodes) as sampler:
        first = nodes.playbook("site.yml", "-vvv", extra_vars=extra, tmp_dir=RECORD)
    doc["runs"]["first"] = _save_run(first, "first")
    sampler.save(RECORD / "ps.json")
    (RECORD / "record.json").write_text(json.dumps(doc, indent=1))
    if first.rc != 0:
        raise AssertionError(
            f"site.yml did not converge (rc={first.rc}; whole output: {RECORD}/first.log):\n"
            + first.tail(80)
        )
    second = nodes.playbook("site.yml", extra_vars=extra, tmp_dir=RECORD)
    check = nodes.playbook("site.yml", "--check", "--diff", extra_vars=extra, tmp_dir=RECORD)
    doc["runs"]["second"] = _save_run(second, "second")
    doc["runs"]["check"] = _save_run(check, "check")
    for node in room.workers:
        wait_worker_active(node)
    doc["state"] = _state(room)
    doc["complete"] = True
    (RECORD / "record.json").write_text(json.dumps(doc, indent=1))
    return Provisioning(first, second, check, sampler, source, reused=False, reason=reason)


def provisioned(room: nodes.Room, by: str) -> Provisioning:
    """The room provisioned: the run's record if it still holds, else converged now."""
    reason = why_not_reuse(room)
    if reason is None:
        return load()
    return converge(room, by, reason)


def main() -> int:
    """``make converge``: the room provisioned for this run (``PIMQ_RUN``) now, so the
    suites after it find the record; ``make test`` runs it beside the integration suite."""
    room = nodes.load_room()
    started = time.monotonic()
    try:
        result = provisioned(room, by=f"make converge (pid {os.getpid()})")
    except AssertionError as e:
        print(f"converge: {e}", flush=True)
        return 1
    if result.reused:
        print(f"converge: {result.reason}", flush=True)
    else:
        runs = result.first, result.second, result.check
        print(
            f"converge: provisioned now ({result.reason}): site.yml -vvv, again and --check"
            f" {', '.join(f'{r.seconds:.0f}' for r in runs)} s"
            f" ({time.monotonic() - started:.0f} s in all); record in {RECORD}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
