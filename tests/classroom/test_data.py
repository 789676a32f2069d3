"""Datasets on the provisioned classroom, and a shaped network: a student puts
the 45 MB corpus on every Pi once (over TLS, as themselves), then the word
count over it sends ranges only; on a 100mbit room the put takes at least the
wire time of the bytes the head must send, and the cached job stays exact."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import nodes

sys.path.insert(0, str(nodes.REPO / "tests" / "harness"))
import link  # tests/harness/link.py (stdlib; classroom.py uses it too)

STUDENT = "dave"  # the datasets of this suite stay out of alice's way
COPIES = 40
pytestmark = [pytest.mark.classroom, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def corpus(room: nodes.Room, converged, shakespeare: Path) -> tuple[str, int, int]:
    """corpus.txt in the student's home (made as students do), grep's count, its size."""
    text = shakespeare.read_bytes() * COPIES
    grep = subprocess.run(
        ["grep", "-ow", "more"], input=text, capture_output=True, env={"LC_ALL": "C.UTF-8"}
    )
    nodes.ssh(room, STUDENT, f"pimq sample shakespeare --copies {COPIES} > corpus.txt", timeout=120)
    return "corpus.txt", len(grep.stdout.splitlines()), len(text)


def pimq(room: nodes.Room, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return nodes.ssh(room, STUDENT, "pimq " + " ".join(args), check=False, timeout=timeout)


def wordcount(room: nodes.Room, path: str) -> dict:
    out = pimq(room, "run", "wordcount", "--word", "more", path, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def shaped(room: nodes.Room):
    """Every node's link at 100 Mbit/s both ways for the test; unshaped after."""
    containers = [nodes.container(n) for n in [room.head, *room.workers]]
    try:
        for c in containers:
            link.shape(c, "100mbit")
        yield containers
    finally:
        for c in containers:
            link.shape(c, None)


def test_put_once_then_the_word_count_sends_ranges(room: nodes.Room, corpus) -> None:
    path, expected, _size = corpus
    out = pimq(room, "data", "put", path, "--quiet")
    try:
        assert out.returncode == 0, out.stderr
        assert f"on {', '.join(sorted(room.workers))}" in out.stdout, out.stdout
        listed = json.loads(pimq(room, "data", "list", "--json").stdout)
        [row] = [r for r in listed["datasets"] if r["name"] == "corpus.txt"]
        assert row["pis"] == sorted(room.workers)
        doc = wordcount(room, path)
        assert doc["result"] == expected
        assert doc["dataset"] == row["sha256"] and doc["shards_sent_with_bytes"] == 0
    finally:
        assert pimq(room, "data", "rm", path).returncode == 0


def test_on_a_100mbit_room_the_put_takes_the_wire_time(room: nodes.Room, corpus, shaped) -> None:
    path, expected, size = corpus
    veth, eth0 = link.shown(shaped[0])
    assert "tbf" in veth and "rate 100Mbit" in veth, veth
    assert "tbf" in eth0 and "rate 100Mbit" in eth0, eth0
    start = time.monotonic()
    out = pimq(room, "data", "put", path, "--quiet")
    took = time.monotonic() - start
    try:
        assert out.returncode == 0, out.stderr
        # the head's link carries one copy per Pi: at 100 Mbit/s that is the floor
        wire = size * len(room.workers) * 8 / 100e6
        assert took >= wire, f"put {size} bytes to {len(room.workers)} Pis in {took:.1f} s"
        doc = wordcount(room, path)  # the shaped link's job, over the cached dataset
        assert doc["result"] == expected and doc["shards_sent_with_bytes"] == 0
        cached = doc["wall_seconds"]
        print(f"100mbit: put {took:.1f} s (wire {wire:.1f} s), cached word count {cached:.2f} s")
    finally:
        assert pimq(room, "data", "rm", path).returncode == 0
