"""A student's real job on the provisioned classroom, end to end.

Alice logs in to the head node over SSH and runs the classic word count on
the 45 MB corpus (40 copies of tinyshakespeare) across the worker Pis; the
count must be grep's. Then the same while a worker Pi is killed mid-job.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
from support import jobs, nodes

COPIES = 40
STUDENT = "alice"
pytestmark = [pytest.mark.classroom, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def corpus(room: nodes.Room, converged, shakespeare: Path) -> tuple[str, int]:
    """The corpus in alice's home on the head, made as the README tells students
    (``pimq sample shakespeare --copies 40 > corpus.txt``, from the sample the
    playbook installed on the head); and grep's count of `more` in it."""
    text = shakespeare.read_bytes() * COPIES
    grep = subprocess.run(
        ["grep", "-ow", "more"], input=text, capture_output=True, env={"LC_ALL": "C.UTF-8"}
    )
    expected = len(grep.stdout.splitlines())
    assert expected > 0
    ssh = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"{STUDENT}@{room.ips[room.head]}"]
    made = subprocess.run(
        [*ssh, f"pimq sample shakespeare --copies {COPIES} > corpus.txt && sha256sum corpus.txt"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.split()[0] == hashlib.sha256(text).hexdigest()  # the repository's bytes
    return "corpus.txt", expected


def run_job(room: nodes.Room, *args: str) -> jobs.Job:
    """`pimq run ... --json` as alice on the head, over SSH, in the background."""
    return jobs.start(room, STUDENT, *args)


def outcome(job: jobs.Job, timeout: float = 600) -> dict:
    job.wait(timeout=timeout)
    assert job.rc == 0, f"pimq run failed ({job.rc}): {job.err}"
    return job.doc


def test_wordcount_of_the_45MB_corpus_equals_grep(room: nodes.Room, corpus) -> None:
    path, expected = corpus
    doc = outcome(run_job(room, "wordcount", "--word", "more", path))
    assert doc["result"] == expected
    # the fleet did it: every worker Pi took part, and every shard is accounted for
    assert set(doc["workers"]) == set(room.workers)
    assert sum(doc["workers"].values()) == doc["shards"]


def test_wordcount_on_one_pi_runs_every_shard_there(room: nodes.Room, corpus) -> None:
    """``--pis 1``: one Pi (any) takes the whole job, the others none of it."""
    path, expected = corpus
    doc = outcome(
        run_job(room, "wordcount", "--word", "more", path, "--shards", "16", "--pis", "1")
    )
    assert doc["result"] == expected
    assert len(doc["workers"]) == 1, doc["workers"]
    assert set(doc["workers"]) <= set(room.workers)
    assert sum(doc["workers"].values()) == doc["shards"] == 16


def test_wordcount_survives_a_worker_pi_killed_mid_job(room: nodes.Room, corpus) -> None:
    path, expected = corpus
    victim = room.workers[-1]
    # The word count takes the fleet a second or two: too quick to hit by
    # timing. So the victim is frozen first; it still takes its share of the
    # shards (its connection is open) but cannot finish them, so the job cannot
    # end while it lives. Then its plug is pulled, holding them.
    jobs.docker("pause", nodes.container(victim))
    job = run_job(room, "wordcount", "--word", "more", path, "--shards", "64")
    try:
        time.sleep(5)
        assert job.proc.poll() is None, "the job ended although the frozen Pi held shards"
        jobs.docker("kill", nodes.container(victim))
        doc = outcome(job)
    finally:
        if job.proc.poll() is None:
            job.proc.kill()
        jobs.docker("start", nodes.container(victim))
    assert doc["result"] == expected
    assert sum(doc["workers"].values()) == doc["shards"] == 64
    # the Pi comes back on its own and its worker rejoins
    jobs.wait_node_back(victim)
    assert outcome(run_job(room, "wordcount", "--word", "more", path))["result"] == expected
