"""Datasets on the in-process broker: a worker receiving an upload as
``pimq data put`` sends it (stored under its checksum, refused over the
quota, a corrupted upload never kept, a redelivered chunk written once),
and a controller whose shards carry ranges of a dataset (the Pi reads its
own copy; a Pi without it gets the bytes). Real-broker versions:
tests/integration/test_data.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.fake_amqp import Room, make_room, start_worker

from pimq.client.controller import Controller
from pimq.client.data import RangeBodies
from pimq.client.route import PiChoice
from pimq.config import StudentConfig
from pimq.jobs.split import split_file
from pimq.protocol import topology
from pimq.protocol.wire import (
    chunk_properties,
    decode_data_event,
    encode_data_put,
    encode_data_rm,
)

STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")
UPLOAD = "00000000000000aa"


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


def settle(room: Room) -> None:
    """Run the loop until nothing is left to run (no timers in these tests)."""
    room.loop.run(lambda: not room.loop._heap)


def events(room: Room, reply: str) -> list[tuple]:
    q = room.broker.queue("s1", reply)
    return [decode_data_event(m.body) for m in q.messages]


def announce(
    room: Room, data: bytes, pis=("pi1",), upload: str = UPLOAD, digest: str | None = None
) -> str:
    reply = topology.result_queue("00000000000000bb")
    room.broker.declare("s1", reply, topology.RESULTS, reply)
    for pi in pis:
        room.broker.declare("s1", topology.data_queue(upload, pi), topology.DATA, upload)
    digest = digest or hashlib.sha256(data).hexdigest()
    body = encode_data_put(digest, "corpus.txt", len(data), upload, reply, list(pis))
    room.broker.put("s1", topology.CONTROL, "", body, None)
    settle(room)
    return reply


def send(
    room: Room, data: bytes, chunk: int, upload: str = UPLOAD, repeat: int | None = None
) -> None:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    order = list(range(len(pieces)))
    if repeat is not None:
        order.insert(repeat + 1, repeat)  # a chunk delivered twice
    for i in order:
        props = chunk_properties(upload, i, len(pieces))
        room.broker.put("s1", topology.DATA, upload, pieces[i], props)
        settle(room)


def test_an_upload_is_stored_under_its_checksum(room, tmp_path):
    worker = start_worker(room, ("s1",), name="pi1", store=str(tmp_path / "store"))
    data = b"more words " * 5000
    reply = announce(room, data)
    send(room, data, 4096, repeat=3)
    digest = hashlib.sha256(data).hexdigest()
    stored = tmp_path / "store" / "s1" / "data" / digest
    assert stored.read_bytes() == data
    said = [e[2] for e in events(room, reply)]
    assert said[0] == "accepted" and said[-1] == "stored"
    # one "got" per chunk but the last ("stored"), and again for the repeated one
    assert said.count("got") == len(range(0, len(data), 4096))
    assert worker.links[0].data.digests() == [digest]
    assert json.loads((stored.parent / f"{digest}.json").read_text()) == {"name": "corpus.txt"}


def test_an_upload_whose_bytes_do_not_match_is_not_kept(room, tmp_path):
    start_worker(room, ("s1",), name="pi1", store=str(tmp_path / "store"))
    data = b"x" * 10000
    reply = announce(room, data, digest="0" * 64)
    send(room, data, 4096)
    last = events(room, reply)[-1]
    assert last[2] == "failed" and "do not match" in last[4]
    folder = tmp_path / "store" / "s1" / "data"
    assert list(folder.iterdir()) == []


def test_over_the_quota_the_upload_is_refused_before_a_byte(room, tmp_path):
    start_worker(room, ("s1",), name="pi1", store=str(tmp_path / "store"), dataset_quota_mb=1)
    data = b"y" * (2 << 20)
    reply = announce(room, data)
    [event] = events(room, reply)
    assert event[2] == "refused" and "over your dataset quota on pi1" in event[4]
    assert not room.broker.queue("s1", topology.data_queue(UPLOAD, "pi1")).consumers


def test_a_pi_not_named_in_the_upload_ignores_it_and_rm_removes(room, tmp_path):
    start_worker(room, ("s1",), name="pi2", store=str(tmp_path / "store"))
    data = b"z" * 100
    reply = announce(room, data, pis=("pi1",))
    assert events(room, reply) == []
    digest = hashlib.sha256(data).hexdigest()
    folder = tmp_path / "store" / "s1" / "data"
    folder.mkdir(parents=True)
    (folder / digest).write_bytes(data)
    room.broker.put("s1", topology.CONTROL, "", encode_data_rm(digest, reply), None)
    settle(room)
    assert events(room, reply)[-1][2] == "removed" and not (folder / digest).exists()


def test_range_shards_read_the_pis_copy_and_a_pi_without_it_gets_the_bytes(room, tmp_path):
    text = b"more less more\n" * 2000
    digest = hashlib.sha256(text).hexdigest()
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(text)
    for name in ("pi1", "pi2"):
        start_worker(room, ("s1",), 1, name=name, store=str(tmp_path / name))
    folder = tmp_path / "pi1" / "s1" / "data"  # only pi1 holds the dataset
    folder.mkdir(parents=True)
    (folder / digest).write_bytes(text)
    bodies: list[RangeBodies] = []

    def make(_n: int) -> RangeBodies:
        bodies.append(RangeBodies(split_file(str(corpus), 10), digest))
        return bodies[0]

    params = json.dumps({"word": "more"}, separators=(",", ":"))
    ctl = Controller(
        STUDENT, "wordcount", params, make, progress=False, pis=PiChoice(2, prefer=digest)
    )
    outcome = ctl.run()
    assert sum(outcome.results[i].value for i in range(10)) == text.count(b"more")
    full = bodies[0].full
    assert full and len(full) < 10  # pi2 asked for bytes, pi1 read its own copy
    assert {outcome.results[i].worker for i in full} <= {"pi1", "pi2"}
    first = [m for _v, m in room.broker.published if m.routing_key.startswith(topology.JOB_PREFIX)]
    assert all(m.body == b"" for m in first[:10])
