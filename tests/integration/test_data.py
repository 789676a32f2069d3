"""Datasets (``pimq data put|list|rm``) on a real broker with real workers
named pi1..pi3, each with its own store: put replicates to every Pi serving
the student, checksummed; a job over the file sends ranges only and stays
exact; a Pi without the dataset gets the bytes; the quota; another student's
dataset is never read for them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pika
import pytest
import yaml
from support.caps import converge
from support.helpers import grep_count, run_json
from support.plugins import REPO

from pimq.protocol import topology
from pimq.protocol.wire import H_DATA, data_header, decode_results, shard_properties

COPIES = 5  # 5.5 MB: 42 chunks


@pytest.fixture
def corpus(tmp_path: Path, shakespeare: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_bytes(shakespeare.read_bytes() * COPIES)
    return path


@pytest.fixture
def pi(start_worker, student, tmp_path):
    """Start Pi ``name`` serving ``vhosts`` (default: the student's), its own store."""

    def start(name: str, vhosts=None, quota_mb: int = 1024):
        store = tmp_path / f"store-{name}"
        worker = start_worker(
            vhosts or [student.vhost],
            processes=2,
            extra_config=f"name: {name}\nstore: {store}\ndataset_quota_mb: {quota_mb}\n",
        )
        worker.store = store
        return worker

    return start


def held(worker, vhost: str, digest: str) -> Path:
    return worker.store / vhost / "data" / digest


def room_caps() -> dict[str, int]:
    """The per-queue caps a room's student vhost gets by default (pimq_students)."""
    defaults = yaml.safe_load((REPO / "roles/pimq/defaults/main.yml").read_text())
    return {
        key: defaults[f"pimq_vhost_{name}"]
        for key, name in (
            ("queue_bytes", "queue_max_bytes"),
            ("queue_length", "queue_max_length"),
            ("data_bytes", "data_max_bytes"),
            ("data_length", "data_max_length"),
        )
    }


def test_put_list_run_rm(broker, cli, student, pi, corpus, tmp_path):
    # the room's caps on the vhost: an upload's queues have the cap of any queue
    assert room_caps()["queue_bytes"] < corpus.stat().st_size
    converge(broker, tmp_path, student.vhost, room_caps())
    pis = {n: pi(n) for n in ("pi1", "pi2", "pi3")}
    digest = hashlib.sha256(corpus.read_bytes()).hexdigest()
    out = cli.run("data", "put", str(corpus))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == digest[:12]
    assert "on pi1, pi2, pi3" in out.stdout
    for w in pis.values():
        path = held(w, student.vhost, digest)
        assert path.read_bytes() == corpus.read_bytes()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    listed = json.loads(cli.run("data", "list", "--json").stdout)
    assert listed["datasets"] == [
        {
            "name": "corpus.txt",
            "size": corpus.stat().st_size,
            "sha256": digest,
            "pis": ["pi1", "pi2", "pi3"],
        }
    ]
    # a second put sends nothing: every Pi has it
    again = cli.run("data", "put", str(corpus))
    assert again.returncode == 0 and "already there: pi1, pi2, pi3" in again.stderr
    doc = run_json(cli, "wordcount", "--word", "more", str(corpus), "--shards", "9")
    assert doc["result"] == grep_count(corpus, "more")
    assert doc["dataset"] == digest and doc["shards_sent_with_bytes"] == 0
    assert sum(doc["workers"].values()) == 9
    out = cli.run("data", "rm", "corpus.txt")
    assert out.returncode == 0, out.stderr
    assert "from pi1, pi2, pi3" in out.stdout
    assert not any(held(w, student.vhost, digest).exists() for w in pis.values())
    assert json.loads(cli.run("data", "list", "--json").stdout)["datasets"] == []
    # no longer a dataset: the job ships its bytes again
    doc = run_json(cli, "wordcount", "--word", "more", str(corpus))
    assert doc["result"] == grep_count(corpus, "more") and doc["dataset"] is None


def test_a_pi_without_the_dataset_gets_the_bytes(cli, student, pi, corpus):
    pi("pi1")
    pi("pi2")
    assert cli.run("data", "put", str(corpus)).returncode == 0
    late = pi("pi3")  # joined after the put
    # pi3 is on the route, but on a loaded machine the two holders can take every
    # shard before pi3 has started on it: a few jobs, each exact, until it has one
    for _attempt in range(5):
        doc = run_json(
            cli, "wordcount", "--word", "more", str(corpus), "--shards", "60", "--pis", "3"
        )
        assert doc["result"] == grep_count(corpus, "more")
        assert doc["dataset"] is not None
        if doc["workers"].get("pi3", 0) >= 1:
            break
    assert doc["workers"].get("pi3", 0) >= 1, doc["workers"]
    assert doc["shards_sent_with_bytes"] >= 1
    assert "not held for this student: asking for its bytes" in late.text()
    # without --pis the job goes to the Pis that hold it
    doc = run_json(cli, "wordcount", "--word", "more", str(corpus), "--shards", "12")
    assert set(doc["workers"]) <= {"pi1", "pi2"} and doc["shards_sent_with_bytes"] == 0


def test_over_the_quota_is_a_clear_error(cli, student, pi, corpus):
    small = pi("pi1", quota_mb=2)
    out = cli.run("data", "put", str(corpus))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "over your dataset quota on pi1" in out.stderr and "> 2 MiB" in out.stderr
    assert "on no Pi" in out.stdout
    folder = small.store / student.vhost / "data"
    assert not folder.exists() or not list(folder.iterdir())


def test_another_students_dataset_is_never_read_for_them(broker, cli, cli_for, student, pi, corpus):
    """The second student's shard names the first one's dataset (by its
    checksum, as a crafted message could): the Pi does not read it for them."""
    other = broker.take()
    pis = [pi(n, [student.vhost, other.vhost]) for n in ("pi1", "pi2")]
    assert cli.run("data", "put", str(corpus)).returncode == 0
    digest = hashlib.sha256(corpus.read_bytes()).hexdigest()
    params = pika.ConnectionParameters(
        "127.0.0.1",
        broker.port,
        other.vhost,
        pika.PlainCredentials(other.user, other.password),
    )
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        reply = topology.result_queue("feedc0de00000001")
        ch.queue_declare(reply, exclusive=True)
        ch.queue_bind(reply, topology.RESULTS, reply)
        props = shard_properties(
            "feedc0de00000001",
            0,
            1,
            "wordcount",
            '{"word":"more"}',
            reply,
            0,
            {H_DATA: data_header(digest, 0, 1000)},
        )
        ch.basic_publish(topology.TASKS, topology.TASKS, b"", props)
        body = None
        for _ in range(200):
            _m, _p, body = ch.basic_get(reply, auto_ack=True)
            if body:
                break
            conn.sleep(0.05)
    assert body, "no answer from the Pis"
    [result] = decode_results(body)
    assert not result.ok and result.missing and result.value is None
    assert f"dataset {digest[:12]} is not on" in result.error
    assert any(f"vhost {other.vhost}: job feedc0de00000001" in w.text() for w in pis)
    # their list shows it on no Pi, and their rm leaves the first student's copies
    theirs = cli_for(other)  # this test's state dir: the first student's record
    listed = json.loads(theirs.run("data", "list", "--json").stdout)
    assert all(row["pis"] == [] for row in listed["datasets"])
    theirs.run("data", "rm", digest)
    assert all(held(w, student.vhost, digest).exists() for w in pis)
