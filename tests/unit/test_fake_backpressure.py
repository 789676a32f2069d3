"""A refused shard (a confirm nack: pimq.tasks at the room's byte cap, overflow
reject-publish) is back-pressure, not loss: the controller keeps it, probes
with one shard at a time until the broker takes shards again, and stops with
QueueFull only after a stall of ``queue_wait`` seconds. Against the in-process
broker with its byte cap (``FakeBroker.max_bytes``) and a real worker on the
same virtual IOLoop; the real-broker version is
tests/integration/test_quotas.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_amqp import WORKER, InlinePool, Room, make_room, start_worker

from pimq.client.controller import Controller
from pimq.config import StudentConfig, WorkerConfig
from pimq.errors import QueueFull
from pimq.protocol import topology
from pimq.worker.daemon import Worker

STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")
SHARD = 100  # bytes per shard body
CAP = 3 * SHARD  # pimq.tasks holds three ready shards


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    room = make_room(monkeypatch, tmp_path)
    room.broker.max_bytes[topology.TASKS] = CAP
    return room


def sized(count: int):
    """``count`` shards of the ``size`` kind (a shard's result is its length),
    each ``SHARD`` bytes, shard i made of the byte ``i % 256``."""
    return lambda _consumers: [bytes([i % 256]) * SHARD for i in range(count)]


def late_worker(room: Room, at: float, processes: int = 2) -> Worker:
    """A worker on s1 whose links connect only ``at`` virtual seconds from now."""
    cfg = WorkerConfig(
        host="fake", user=WORKER[0], password=WORKER[1], vhosts=("s1",), processes=processes
    )
    worker = Worker(cfg, log_shards=False)
    worker.pool.start()
    room.loop.call_later(at, lambda: [link.connect() for link in worker.links])
    return worker


def watch_ready_bytes(room: Room) -> list[int]:
    """Ready bytes of s1's pimq.tasks after every publish (a confirm rule that refuses nothing)."""
    seen: list[int] = []

    def rule(ch, exchange, routing_key, body):
        room.loop.call_later(0, lambda: seen.append(room.broker.ready_bytes("s1", topology.TASKS)))
        return True

    room.broker.confirm_rule = rule
    return seen


def test_a_job_larger_than_the_cap_completes_exact_through_refusals(room):
    seen = watch_ready_bytes(room)
    start_worker(room, ("s1",), processes=2)
    controller = Controller(STUDENT, "size", "{}", sized(40), progress=False)
    outcome = controller.run()
    assert sorted(outcome.results) == list(range(40))
    assert all(r.value == SHARD for r in outcome.results.values())
    assert outcome.duplicates == 0
    refused = [m for v, m in room.broker.refused if m.exchange == topology.TASKS]
    assert refused, "the cap never refused a shard: the test shows nothing"
    assert outcome.refused == len(refused)
    assert max(seen) <= CAP  # the broker's cap held throughout
    # every shard went in exactly once (a refused one is not in the queue)
    accepted = [
        m.properties.headers["pimq-index"]
        for v, m in room.broker.published
        if m.exchange == topology.TASKS and not any(m is r for r in refused)
    ]
    assert sorted(accepted) == list(range(40))
    assert room.broker.depth("s1", topology.TASKS) == 0


def test_a_full_queue_is_probed_one_shard_at_a_time_not_flooded(room):
    late_worker(room, at=60.0)
    at_60: list[int] = []
    room.loop.call_later(59.9, lambda: at_60.append(len(room.broker.refused)))
    controller = Controller(STUDENT, "size", "{}", sized(40), progress=False)
    outcome = controller.run()
    # the first pass sends all 40, three fit; after that, one probe per
    # back-off (0.1 s doubling to 2 s): ~33 probes in 60 s, not 37 per round
    burst = 40 - 3
    assert burst <= at_60[0] <= burst + 60 / 2.0 + 5, at_60
    # and once a worker takes shards, the job completes exact
    assert sorted(outcome.results) == list(range(40))
    assert all(r.value == SHARD for r in outcome.results.values())


def test_refusal_with_no_progress_stops_after_queue_wait_naming_the_shards(room):
    controller = Controller(STUDENT, "size", "{}", sized(5), progress=False, queue_wait=30.0)
    with pytest.raises(QueueFull) as err:
        controller.run()
    text = str(err.value)
    assert err.value.exit_code == 4
    assert "for 30 s" in text and "pimq.tasks in vhost 's1'" in text
    assert "2 of 5 shard(s) not queued: 3, 4" in text
    assert f"largest refused shard has {SHARD} bytes" in text
    assert 30.0 <= room.loop.now < 40.0  # stopped once the wait was over, not later
    # no worker served the vhost: the cancelled job's queued shards were taken back
    assert room.broker.depth("s1", topology.TASKS) == 0


def test_a_slow_but_moving_queue_is_not_a_stall(room, monkeypatch):
    monkeypatch.setattr(InlinePool, "seconds_per_shard", 1.0)
    start_worker(room, ("s1",), processes=1)
    controller = Controller(STUDENT, "size", "{}", sized(20), progress=False, queue_wait=5.0)
    outcome = controller.run()
    assert room.loop.now > 15.0  # the job took far longer than queue_wait...
    assert outcome.refused > 0  # ...with shards refused along the way...
    assert sorted(outcome.results) == list(range(20))  # ...and still completed exact
