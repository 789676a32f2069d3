"""Ctrl-C and --timeout stop a job's *running* shards on every Pi (issue #12);
a job that fills every Pi gives way to another student's (issue #14).

A job whose shards run for a minute each fills every shard process of every
worker Pi; then the student presses Ctrl-C (SIGINT to their ``pimq run`` on the
head, as a terminal sends it) or the job's ``--timeout`` runs out. Within
seconds no shard of it runs anywhere: every Pi's worker says so in its journal
(``stopped N running``), its own count of busy processes (the metrics textfile
the node exporter serves) is back to 0, and for a student module no sandbox
unit is left running. Asserted on what the Pis report, never on a stopwatch.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from support import jobs, nodes
from support.helpers import job_id as first_job_id

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(900)]

STUDENT = "frank"  # no other classroom test runs jobs as frank
OTHER = "heidi"  # the short job's student (her password is reset later, in test_teacher_tools)
METRICS = "/var/lib/pimq-metrics/pimq-worker.prom"
SLOW_MODULE = """
import time

def split(args, params, shards):
    return [b"x"] * shards

def run(body, params):
    time.sleep(60)
    return 1

def join(results, params):
    return sum(results)
"""


def busy(node: str) -> int | None:
    """The worker's own count of shard processes running a shard (None: not written yet)."""
    text = nodes.on_node(node, f"cat {METRICS} 2>/dev/null || true").stdout
    m = re.search(r"^pimq_worker_processes_busy (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else None


def sandboxes(node: str) -> list[str]:
    out = nodes.on_node(
        node, "systemctl list-units --no-legend --plain --state=running 'pimq-sandbox@*'"
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def journal_since(node: str, cursor: str) -> str:
    argv = [
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-u",
        "pimq-worker",
        f"--after-cursor={cursor}",
    ]
    return nodes.on_node(node, argv).stdout


def cursor(node: str) -> str:
    out = nodes.on_node(node, "journalctl -n 0 --show-cursor -u pimq-worker --no-pager").stdout
    return out.strip().rsplit("cursor: ", 1)[-1]


def job_id(err: str) -> str:
    m = re.search(r"job (\S+) cancelled", err)
    assert m, err[-600:]
    return m.group(1)


def every_pi_busy(room: nodes.Room) -> None:
    for node in room.workers:
        nodes.wait_for(
            lambda node=node: (busy(node) or 0) >= 1,
            timeout=120,
            interval=2,
            what=f"a shard of the job running on {node}",
        )


def assert_stopped_everywhere(room: nodes.Room, marks: dict[str, str], job: str, module: bool):
    stopped = {}
    for node in room.workers:
        nodes.wait_for(
            lambda node=node: busy(node) == 0,
            timeout=60,
            interval=2,
            what=f"no shard process busy on {node}",
        )
        text = journal_since(node, marks[node])
        m = re.search(
            rf"job {re.escape(job)} \w+, dropped \d+ queued shard\(s\), stopped (\d+) running", text
        )
        assert m, f"{node}: no stop of job {job} in its journal:\n{text[-1500:]}"
        stopped[node] = int(m.group(1))
        if module:
            nodes.wait_for(
                lambda node=node: sandboxes(node) == [],
                timeout=60,
                interval=2,
                what=f"no sandbox of the job left running on {node}",
            )
    assert all(n >= 1 for n in stopped.values()), stopped


@pytest.fixture
def marks(room: nodes.Room, converged) -> dict[str, str]:
    for node in room.workers:
        jobs.wait_worker_active(node)
    return {node: cursor(node) for node in room.workers}


def shards_for(room: nodes.Room) -> int:
    """Twice the room's shard processes: every one of them busy, more waiting."""
    total = 0
    for node in room.workers:
        nodes.wait_for(
            lambda node=node: busy(node) is not None, timeout=60, what=f"{METRICS} on {node}"
        )
        total += processes(node)
    return 2 * total


def test_ctrl_c_stops_a_built_in_jobs_running_shards_on_every_pi(room, marks):
    shards = [f"{i:02d}" for i in range(shards_for(room))]
    job = jobs.start(room, STUDENT, "sleep", *shards, "--per-char", "30")  # 60 s a shard
    every_pi_busy(room)
    # Ctrl-C in the student's terminal: SIGINT to their pimq run on the head.
    nodes.on_node(room.head, ["pkill", "-INT", "-u", STUDENT, "-f", "pimq run sleep"])
    job.proc.wait(timeout=60)
    err = job.proc.stderr.read() if job.proc.stderr else ""
    assert job.proc.returncode == 130, err[-600:]
    job_ = job_id(err)
    assert err.strip().splitlines()[-1] == f"pimq: interrupted: job {job_} cancelled"
    assert_stopped_everywhere(room, marks, job_, module=False)


def test_timeout_stops_a_student_modules_running_shards_and_sandboxes_on_every_pi(room, marks):
    home = f"/home/{STUDENT}"
    nodes.on_node(
        room.head,
        f"cat > {home}/slow.py && chown {STUDENT}: {home}/slow.py",
        input=SLOW_MODULE,
    )
    shards = shards_for(room)
    command = f"cd {home} && pimq run ./slow.py --shards {shards} --timeout 40"
    out = nodes.ssh(room, STUDENT, command, check=False, timeout=300)
    assert out.returncode == 4, (out.returncode, out.stderr[-600:])
    assert "timed out after 40 s" in out.stderr, out.stderr[-600:]
    assert_stopped_everywhere(room, marks, first_job_id(out.stderr), module=True)
    nodes.on_node(room.head, f"rm -f {shlex.quote(home + '/slow.py')}")


def test_a_job_filling_every_pi_gives_way_to_another_students_short_job(room, marks):
    """frank's 60 s shards hold every process of every Pi, more wait; heidi's short
    job arrives. Each Pi gives one of frank's running shards back (preempted, not
    counted as an attempt), heidi's job runs to its end while frank's first shards
    still run (no shard of his has ended), exact; then Ctrl-C stops frank's."""
    shards = [f"{i:02d}" for i in range(shards_for(room))]
    hog = jobs.start(room, STUDENT, "sleep", *shards, "--per-char", "30")  # 60 s a shard
    for node in room.workers:
        nodes.wait_for(
            lambda node=node: busy(node) == processes(node),
            timeout=120,
            interval=2,
            what=f"every shard process of {node} running frank's job",
        )
    out = nodes.ssh(room, OTHER, "pimq run sleep a b c d e f --per-char 0.5 --json", timeout=300)
    short = json.loads(out.stdout)
    assert short["result"] == 6 and sum(short["workers"].values()) == 6, short
    assert hog.proc.poll() is None, "frank's job ended before heidi's short one"
    given_back = ended = 0
    for node in room.workers:
        text = journal_since(node, marks[node])
        given_back += len(
            re.findall(rf"vhost {STUDENT} held all \d+ processes while another vhost waited", text)
        )
        ended += len(re.findall(rf"shards? [\d,]+/{len(shards)} sleep vhost {STUDENT} ", text))
    assert given_back >= 1, "no Pi gave one of frank's running shards back"
    assert ended == 0, "heidi's job waited for a shard of frank's to end"

    nodes.on_node(room.head, ["pkill", "-INT", "-u", STUDENT, "-f", "pimq run sleep"])
    hog.proc.wait(timeout=60)
    err = hog.proc.stderr.read() if hog.proc.stderr else ""
    assert hog.proc.returncode == 130, err[-600:]
    assert_stopped_everywhere(room, marks, job_id(err), module=False)


def processes(node: str) -> int:
    """The worker's shard processes (its metrics textfile)."""
    text = nodes.on_node(node, f"cat {METRICS}").stdout
    m = re.search(r"^pimq_worker_processes (\S+)$", text, re.M)
    assert m, text
    return int(float(m.group(1)))
