"""Routed jobs (``pimq run --pis``) on a real broker with three real workers
named pi1..pi3 (the worker config's ``name``): the Pis asked for take every
shard, the others none; a clear error for a Pi the room does not have; a Pi
killed mid-job loses nothing; an unrouted job after a routed one still runs
everywhere."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from support.helpers import grep_count, job_id, run_json

PIS = ("pi1", "pi2", "pi3")


@pytest.fixture
def room(start_worker, student):
    return {
        name: start_worker([student.vhost], processes=2, extra_config=f"name: {name}\n")
        for name in PIS
    }


def test_pis_1_runs_every_shard_on_one_pi(cli, room, shakespeare):
    doc = run_json(
        cli, "wordcount", "--word", "more", str(shakespeare), "--shards", "12", "--pis", "1"
    )
    assert doc["result"] == grep_count(shakespeare, "more")
    assert len(doc["workers"]) == 1 and sum(doc["workers"].values()) == 12, doc["workers"]
    assert set(doc["workers"]) <= set(PIS)


def test_named_pis_take_the_shards_the_others_none(cli, room):
    doc = run_json(cli, "primes", "300000", "--shards", "24", "--pis", "pi1,pi3")
    assert doc["result"] == 25997
    assert set(doc["workers"]) <= {"pi1", "pi3"} and sum(doc["workers"].values()) == 24
    # the routes are over: an unrouted job is served by every Pi again
    doc = run_json(cli, "sleep", *["abc"] * 30, "--per-char", "0.02")
    assert set(doc["workers"]) == set(PIS), doc["workers"]


def test_an_unknown_pi_or_too_many_is_a_clear_error(cli, room):
    out = cli.run("run", "noop", "--pis", "pi1,pi7")
    assert out.returncode == 2, out.stderr
    assert "no Pi named pi7 serves vhost" in out.stderr and "(serving: pi1, pi2, pi3)" in out.stderr
    out = cli.run("run", "noop", "--pis", "5")
    assert out.returncode == 2, out.stderr
    assert "--pis 5: only 3 Pi(s) serve vhost" in out.stderr


def test_a_pi_killed_mid_job_loses_nothing(cli, room):
    proc = cli.start("run", "sleep", *["abcd"] * 24, "--per-char", "0.1", "--pis", "2", "--json")
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = next(
            (n for n, w in room.items() if "shard" in w.text() and "routed here" in w.text()), None
        )
        time.sleep(0.1)
    assert victim, {n: w.text() for n, w in room.items()}
    room[victim].kill()
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["result"] == 96
    assert sum(doc["workers"].values()) == 24
    job = job_id(stderr)
    others = [w for n, w in room.items() if n != victim and f"job {job} routed here" in w.text()]
    assert others, "no other Pi of the route took the job"
