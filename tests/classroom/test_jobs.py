"""A student's real job on the provisioned classroom, end to end.

Alice logs in to the head node over SSH and runs the classic word count on
the 45 MB corpus (40 copies of tinyshakespeare) across the worker Pis; the
count must be grep's. Then the same while a worker Pi is killed mid-job.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from support import nodes

DATA = nodes.REPO / "data" / "tinyshakespeare.txt"
COPIES = 40
pytestmark = [pytest.mark.classroom, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def corpus(room: nodes.Room, converged) -> tuple[str, int]:
    """The corpus in alice's home on the head; and grep's count of `more` in it."""
    if not DATA.exists():
        pytest.skip(f"no test data at {DATA}")
    text = DATA.read_bytes() * COPIES
    grep = subprocess.run(
        ["grep", "-ow", "more"], input=text, capture_output=True, env={"LC_ALL": "C.UTF-8"}
    )
    expected = len(grep.stdout.splitlines())
    assert expected > 0
    ssh = ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"alice@{room.ips[room.head]}"]
    subprocess.run([*ssh, "cat > corpus.txt"], input=text, check=True, timeout=120)
    return "corpus.txt", expected


def run_job(room: nodes.Room, *args: str) -> subprocess.Popen[str]:
    """`pimq run ... --json` as alice on the head, over SSH, in the background."""
    command = "pimq run " + " ".join(args) + " --json"
    return subprocess.Popen(
        ["ssh", "-i", str(room.key), *nodes.SSH_OPTIONS, f"alice@{room.ips[room.head]}", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcome(job: subprocess.Popen[str], timeout: float = 600) -> dict:
    out, err = job.communicate(timeout=timeout)
    assert job.returncode == 0, f"pimq run failed ({job.returncode}): {err}"
    return json.loads(out)


def test_wordcount_of_the_45MB_corpus_equals_grep(room: nodes.Room, corpus) -> None:
    path, expected = corpus
    doc = outcome(run_job(room, "wordcount", "--word", "more", path))
    assert doc["result"] == expected
    # the fleet did it: every worker Pi took part, and every shard is accounted for
    assert set(doc["workers"]) == set(room.workers)
    assert sum(doc["workers"].values()) == doc["shards"]


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def wait_node_back(node: str) -> None:
    """The restarted Pi has booted fully: its broker answers, its worker runs."""
    nodes.wait_for(
        lambda: (
            nodes.on_node(node, "systemctl is-system-running", check=False).stdout.strip()
            == "running"
        ),
        timeout=180,
        what=f"{node} booted with every unit running",
    )
    nodes.on_node(node, "rabbitmqctl -q await_startup --timeout 120", timeout=150)
    assert nodes.on_node(node, "systemctl is-active pimq-worker").stdout.strip() == "active"


def test_wordcount_survives_a_worker_pi_killed_mid_job(room: nodes.Room, corpus) -> None:
    path, expected = corpus
    victim = room.workers[-1]
    # The word count takes the fleet a second or two: too quick to hit by
    # timing. So the victim is frozen first; it still takes its share of the
    # shards (its connection is open) but cannot finish them, so the job cannot
    # end while it lives. Then its plug is pulled, holding them.
    docker("pause", nodes.container(victim))
    job = run_job(room, "wordcount", "--word", "more", path, "--shards", "64")
    try:
        time.sleep(5)
        assert job.poll() is None, "the job ended although the frozen Pi held shards"
        docker("kill", nodes.container(victim))
        doc = outcome(job)
    finally:
        if job.poll() is None:
            job.kill()
        docker("start", nodes.container(victim))
    assert doc["result"] == expected
    assert sum(doc["workers"].values()) == doc["shards"] == 64
    # the Pi comes back on its own and its worker rejoins
    wait_node_back(victim)
    assert outcome(run_job(room, "wordcount", "--word", "more", path))["result"] == expected
