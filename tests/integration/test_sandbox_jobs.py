"""Student modules and stopping running shards, against the real RabbitMQ with
real worker processes. The sandbox is the real runner behind
``support.sandbox.Activator`` (systemd's ``Accept=yes`` stood in for; the OS
limits are tested on the simulated classroom, tests/classroom/test_sandbox.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.helpers import queue_depth, wait_until
from support.sandbox import Activator

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "wordcount_module.py"
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"
SLOW = """\
import time
def split(a, p, n):
    return [b"x"] * n
def run(body, params):
    time.sleep(60)
def join(r, p):
    return r
"""


@pytest.fixture
def activator(tmp_path: Path):
    act = Activator(tmp_path / "sandbox.sock")
    yield act
    act.close()


def sandbox_worker(start_worker, tmp_path: Path, activator: Activator, vhost: str, **kw):
    return start_worker(
        [vhost],
        extra_config=(
            f"store: {tmp_path / 'store'}\nsandbox_socket: {activator.path}\n"
            + "".join(f"{k}: {v}\n" for k, v in kw.items())
        ),
    )


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_a_student_module_equals_grep(broker, student, cli, start_worker, tmp_path, activator):
    sandbox_worker(start_worker, tmp_path, activator, student.vhost)
    out = cli.run(
        "run", str(EXAMPLE), str(SHAKESPEARE), "--word", "the", "--json", "--shards", "12"
    )
    assert out.returncode == 0, out.stderr
    grep = subprocess.run(
        ["grep", "-ow", "the", str(SHAKESPEARE)], capture_output=True, env={"LC_ALL": "C"}
    )
    assert json.loads(out.stdout)["result"] == grep.stdout.count(b"\n")
    assert 1 <= len(activator.procs) <= 2  # one warm sandbox per pool process, not per shard
    wait_until(lambda: not activator.alive())  # ended with the job
    assert queue_depth(broker, student, "pimq.tasks") == 0


def test_a_shard_past_the_students_limit_fails_the_job_named(
    student, cli, start_worker, tmp_path, activator
):
    (tmp_path / "slow.py").write_text(SLOW)
    sandbox_worker(start_worker, tmp_path, activator, student.vhost)
    out = cli.run("run", str(tmp_path / "slow.py"), "--shards", "1", "--shard-timeout", "1")
    assert out.returncode == 1, out.stderr
    assert "time limit 1 s exceeded" in out.stderr
    wait_until(lambda: not activator.alive())


@pytest.mark.parametrize("what", ["builtin", "module"])
def test_a_timed_out_job_stops_its_running_shards(
    student, cli, start_worker, tmp_path, activator, what
):
    (tmp_path / "slow.py").write_text(SLOW)
    worker = sandbox_worker(start_worker, tmp_path, activator, student.vhost)
    before = children(worker.proc.pid)
    assert len(before) == 2
    if what == "builtin":
        args = ["sleep", "x" * 60, "--per-char", "1", "--shards", "2"]
    else:
        args = [str(tmp_path / "slow.py"), "--shards", "2"]
    out = cli.run("run", *args, "--timeout", "2")
    assert out.returncode == 4, out.stderr
    # both pool processes were running the job: within seconds they are
    # replaced, and no sandbox of the job is left
    wait_until(lambda: not (children(worker.proc.pid) & before), timeout=10)
    assert len(children(worker.proc.pid)) == 2
    wait_until(lambda: not activator.alive(), timeout=10)
    worker.wait_for("stopped 2 running")
    assert worker.proc.poll() is None
    for pid in before:
        assert not os.path.exists(f"/proc/{pid}")
