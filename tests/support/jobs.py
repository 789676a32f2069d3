"""Running `pimq run ... --json` as a student on the classroom's head, over SSH.

Shared by the classroom suite (a job with a Pi killed) and the chaos suite (jobs
through faults, under load, as every student at once).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field

from support import nodes

# The simulated classroom's roster (tests/harness/classroom.py ROSTER): the chaos
# suite runs jobs as each of them, on the same room the classroom suite checks.
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


# A class logging in together on a busy head: sshd forks a process per login and
# the banner can take longer than the harness's usual 5 s on a loaded machine.
# (A head that turns logins away, past MaxStartups, refuses at once: not masked.)
LOGIN_TIMEOUT = ["-o", "ConnectTimeout=30"]  # before SSH_OPTIONS: ssh keeps the first value


def start(room: nodes.Room, student: str, *args: str) -> Job:
    """``pimq run ARGS --json`` as ``student`` on the head, over SSH, in the background."""
    command = "pimq run " + " ".join(shlex.quote(a) for a in args) + " --json"
    target = f"{student}@{room.ips[room.head]}"
    argv = ["ssh", *LOGIN_TIMEOUT, "-i", str(room.key), *nodes.SSH_OPTIONS, target]
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


def docker(*args: str) -> None:
    """A docker command on a node's container (pause, kill, stop, start...)."""
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=120)


def wait_node_back(node: str) -> None:
    """A restarted Pi has booted fully: every unit running, its broker answers,
    its worker is active."""
    nodes.wait_for(
        lambda: (
            nodes.on_node(node, "systemctl is-system-running", check=False).stdout.strip()
            == "running"
        ),
        timeout=180,
        what=f"{node} booted with every unit running",
    )
    nodes.on_node(node, "rabbitmqctl -q await_startup --timeout 120", timeout=150)
    wait_worker_active(node)
