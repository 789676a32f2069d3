"""Running `pimq run ... --json` as a student on the chaos classroom's head, over SSH."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field

import nodes

STUDENTS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


@dataclass
class Job:
    student: str
    proc: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    doc: dict | None = None
    rc: int | None = None
    err: str = ""

    def wait(self, timeout: float = 600) -> Job:
        out, self.err = self.proc.communicate(timeout=timeout)
        self.rc = self.proc.returncode
        if self.rc == 0:
            self.doc = json.loads(out)
        return self

    @property
    def shards_lost(self) -> int:
        if not self.doc:
            return 0
        return max(0, self.doc["shards"] - sum(self.doc["workers"].values()))

    @property
    def shards_twice(self) -> int:
        if not self.doc:
            return 0
        return max(0, sum(self.doc["workers"].values()) - self.doc["shards"])

    @property
    def duplicates(self) -> int:
        """Results the controller dropped because their shard already had one
        (a redelivery after a fault: seen, and not counted)."""
        return self.doc.get("duplicates", 0) if self.doc else 0


def start(room: nodes.Room, student: str, *args: str) -> Job:
    command = "pimq run " + " ".join(shlex.quote(a) for a in args) + " --json"
    argv = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"{student}@{room.ips[room.head]}"]
    proc = subprocess.Popen(
        [*argv, command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Job(student, proc)


def wordcount(room: nodes.Room, student: str, corpus: str, word: str, shards: int = 32) -> Job:
    return start(room, student, "wordcount", "--word", word, corpus, "--shards", str(shards))


def jobs_per_fault() -> int:
    return int(os.environ.get("CHAOS_JOBS", "10"))


def worker_props(node: str, *props: str) -> dict[str, str]:
    out = nodes.on_node(
        node,
        ["systemctl", "show", "pimq-worker.service", *[f"--property={p}" for p in props]],
        check=False,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_worker_active(node: str, timeout: float = 180) -> None:
    nodes.wait_for(
        lambda: worker_props(node, "ActiveState").get("ActiveState") == "active",
        timeout=timeout,
        what=f"pimq-worker active on {node}",
    )
