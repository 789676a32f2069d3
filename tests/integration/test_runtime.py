"""Worker and controller behaviour under stress: heartbeats, signals, restarts."""

from __future__ import annotations

import json
import signal
import time

import pytest
from support.helpers import job_id, queue_depth, run_json, shard_lines, wait_until

from pimq.protocol import wire


def finish(proc, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_job_started(proc_stderr_lines: list[str], proc) -> str:
    line = proc.stderr.readline()
    proc_stderr_lines.append(line)
    return job_id(line)


@pytest.mark.timeout(120)
def test_long_shard_with_short_heartbeat(student, cli, start_worker):
    worker = start_worker([student.vhost], processes=1, heartbeat=2)
    doc = run_json(cli, "sleep", "12345678", "--per-char", "1")  # one 8 s shard
    assert doc["result"] == 8 and doc["shards"] == 1
    assert sum(doc["workers"].values()) == 1
    log = worker.text()
    assert "reconnecting" not in log and "lost" not in log, log
    assert log.count("connected to") == 1


def test_sigterm_finishes_running_shard_then_exits(broker, student, cli, start_worker):
    worker = start_worker([student.vhost], processes=1)
    proc = cli.start("run", "sleep", "ab", "cd", "ef", "gh", "--per-char", "1", "--json")
    err: list[str] = []
    job = wait_job_started(err, proc)
    worker.wait_for(f"job {job} shard 1/4")  # first shard done, second running
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=30) == 0
    log = worker.text()
    assert "stopping" in log and "pimq worker stopped" in log
    done_by_first = len(shard_lines(log, job))
    # The running shard (and the one queued in the pool) were finished, none taken after.
    assert done_by_first in (2, 3)
    second = start_worker([student.vhost], processes=2)
    code, out, _ = finish(proc)
    assert code == 0
    doc = json.loads(out)
    assert doc["result"] == 8 and doc["shards"] == 4
    assert len(shard_lines(second.text(), job)) == 4 - done_by_first


def test_sigterm_gives_back_a_shard_longer_than_the_drain(broker, student, cli, start_worker):
    worker = start_worker([student.vhost], processes=1, extra=("--drain-timeout", "1"))
    proc = cli.start("run", "sleep", "x" * 30, "--per-char", "1", "--json")
    job = wait_job_started([], proc)
    wait_until(lambda: queue_depth(broker, student, "pimq.tasks") == 0)  # taken
    time.sleep(0.5)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=20) == 0
    assert "giving back 1 running shard" in worker.text()
    assert shard_lines(worker.text(), job) == []
    assert queue_depth(broker, student, "pimq.tasks") == 1  # given back, not lost
    proc.send_signal(signal.SIGINT)
    assert finish(proc)[0] == 130


def test_broker_restart_mid_job(broker, student, cli, start_worker):
    worker = start_worker([student.vhost], processes=2)
    messages = [f"{i:02d}" for i in range(24)]  # 2 chars x 0.15 s each
    proc = cli.start("run", "sleep", *messages, "--per-char", "0.15", "--json")
    job = wait_job_started([], proc)
    worker.wait_for(f"job {job} shard", count=4)
    broker.restart_app()
    code, out, err = finish(proc)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["shards"] == 24 and doc["result"] == 48
    assert sum(doc["workers"].values()) == 24
    assert "reconnecting" in worker.text()
    worker.wait_for(f"vhost {student.vhost}: connected", count=2)
    # shards re-published after the restart are dropped once the job is done
    wait_until(lambda: queue_depth(broker, student, "pimq.tasks") == 0)
    assert queue_depth(broker, student, f"pimq.result.{job}") is None


def test_ctrl_c_cancels_the_job(broker, student, cli, start_worker):
    worker = start_worker([student.vhost], processes=2)
    proc = cli.start("run", "sleep", *[f"{i:02d}" for i in range(40)], "--per-char", "0.25")
    job = wait_job_started([], proc)
    worker.wait_for(f"job {job} shard", count=2)
    proc.send_signal(signal.SIGINT)
    code, _out, err = finish(proc)
    assert code == 130
    assert err.strip().splitlines()[-1] == f"pimq: interrupted: job {job} cancelled"
    worker.wait_for(f"job {job} cancelled, dropped")
    wait_until(lambda: queue_depth(broker, student, "pimq.tasks") == 0)
    assert queue_depth(broker, student, f"pimq.result.{job}") is None
    done = len(shard_lines(worker.text(), job))
    time.sleep(1.0)
    assert len(shard_lines(worker.text(), job)) == done  # nothing more of it runs
    assert done < 20


def test_timeout_names_missing_shards(broker, student, cli):
    out = cli.run("run", "noop", "--shards", "3", "--timeout", "1.5")  # no worker at all
    assert out.returncode == 4
    last = out.stderr.strip().splitlines()[-1]
    assert last == "pimq: timed out after 1.5 s: 3 of 3 shard(s) missing: 0, 1, 2"
    job = job_id(out.stderr)
    assert queue_depth(broker, student, f"pimq.result.{job}") is None
    assert "took 3 shard(s)" in out.stderr
    assert queue_depth(broker, student, "pimq.tasks") == 0  # nobody would ever drop them


def test_a_cancelled_job_takes_only_its_own_shards_back(broker, student, cli, start_worker):
    """No worker: job A waits in pimq.tasks; job B (10000 shards) is interrupted while
    it publishes. B's shards leave the queue, A's stay, in order, and A then runs."""
    first = cli.start("run", "sleep", *[f"{i:02d}" for i in range(6)], "--per-char", "0", "--json")
    job_a = wait_job_started([], first)
    wait_until(lambda: queue_depth(broker, student, "pimq.tasks") == 6)
    second = cli.start("run", "noop", "--shards", "10000")
    job_b = wait_job_started([], second)
    time.sleep(0.3)
    second.send_signal(signal.SIGINT)
    code, _out, err = finish(second, timeout=60)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == f"pimq: interrupted: job {job_b} cancelled"
    assert "took " in err
    assert queue_depth(broker, student, "pimq.tasks") == 6
    start_worker([student.vhost], processes=1)
    code, out, err = finish(first)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["job"], doc["shards"], doc["result"]) == (job_a, 6, 12)


def test_two_concurrent_jobs_of_one_student_never_mix(student, cli, start_worker, tmp_path):
    start_worker([student.vhost], processes=2)
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("more " * 5000)
    b.write_text("more less " * 3000)
    procs = [
        cli.start("run", "wordcount", "--word", "more", str(p), "--shards", "20", "--json")
        for p in (a, b, a, b)
    ]
    results = [json.loads(finish(p)[1])["result"] for p in procs]
    assert results == [5000, 3000, 5000, 3000]


def test_fair_between_two_students(broker, cli_for, start_worker):
    alice, bob = broker.take(), broker.take()
    worker = start_worker([alice.vhost, bob.vhost], processes=1, prefetch=1)
    big = cli_for(alice).start("run", "sleep", *["x"] * 60, "--per-char", "0.1", "--json")
    job_a = wait_job_started([], big)
    worker.wait_for(f"job {job_a} shard", count=3)
    small = cli_for(bob).run("run", "sleep", *["y"] * 5, "--per-char", "0.1", "--json")
    assert small.returncode == 0, small.stderr
    job_b = json.loads(small.stdout)["job"]
    code, out, _ = finish(big)
    assert code == 0 and json.loads(out)["result"] == 60
    lines = [line for line in worker.text().splitlines() if " shard " in line]
    order = [
        "b" if f"job {job_b}" in line else "a"
        for line in lines
        if f"job {job_a}" in line or f"job {job_b}" in line
    ]
    first_b, last_b = order.index("b"), len(order) - 1 - order[::-1].index("b")
    # Round-robin: while bob has work, alice gets about one shard per bob shard.
    assert order[first_b : last_b + 1].count("a") <= 5 + 2
    assert order.count("a") == 60 and order.count("b") == 5
    assert order[last_b + 1 :].count("a") >= 40  # bob did not wait for alice's job


def test_worker_killed_mid_job_loses_nothing(student, cli, start_worker):
    first = start_worker([student.vhost], processes=2)
    proc = cli.start(
        "run", "sleep", *[f"{i:02d}" for i in range(20)], "--per-char", "0.1", "--json"
    )
    job = wait_job_started([], proc)
    first.wait_for(f"job {job} shard", count=3)
    first.kill()  # SIGKILL to the whole process group, like a Pi losing power
    start_worker([student.vhost], processes=2)
    code, out, err = finish(proc)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["shards"] == 20 and doc["result"] == 40


DIES = """
import os
def split(args, params, shards):
    return [b'ok', b'die', b'ok']
def run(body, params):
    if body == b'die':
        os._exit(3)
    return 1
def join(results, params):
    return sum(results)
"""


def test_shard_process_that_dies_is_replaced(broker, student, cli, start_worker, jobs_dir):
    (jobs_dir / "dies.py").write_text(DIES)
    worker = start_worker([student.vhost], processes=1)
    out = cli.run("run", "dies", "--timeout", "60")
    assert out.returncode == 1
    assert "shard process died (exit code 3)" in out.stderr.strip().splitlines()[-1]
    assert worker.text().count("a shard process died (exit code 3)") == 3
    assert run_json(cli, "noop", "--shards", "4")["result"] == 4  # the pool lives on


def test_a_result_that_comes_twice_is_kept_once_and_counted(broker, student, cli, start_worker):
    """A redelivered shard's second result (here: sent by hand, twice, before any worker
    runs the shard) is dropped, the job stays exact, and --json says how many were."""
    proc = cli.start("run", "sleep", "abc", "de", "--per-char", "0", "--json")
    job = wait_job_started([], proc)
    conn = broker.connect(student)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        body = wire.encode_results(job, "by-hand", [wire.shard_result(0, True, 3, 0.0)])
        for _ in range(2):
            ch.basic_publish("pimq.results", f"pimq.result.{job}", body)
    finally:
        conn.close()
    start_worker([student.vhost], processes=1)
    code, out, err = finish(proc)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["result"] == 5 and doc["shards"] == 2
    assert doc["duplicates"] == 2  # the second by hand, and the worker's own for shard 0
    assert doc["workers"]["by-hand"] == 1
