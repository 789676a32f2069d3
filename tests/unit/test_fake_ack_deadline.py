"""The broker's consumer_timeout against the worker's logic (in-process broker,
virtual time): a delivery that waited in the worker's window too long to get
its time limit is given back unrun, the pool is told the broker's deadline,
and a shard the broker's timeout closed the channel on is dead-lettered at its
redelivery instead of running into the same end again. The real-broker version
is tests/integration/test_consumer_timeout.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.fake_amqp import InlinePool, Room, make_room, start_worker, worker_on_virtual_time

from pimq.client.controller import Controller
from pimq.config import StudentConfig
from pimq.errors import JobFailed
from pimq.protocol import topology

STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")
ACK_TIMEOUT = (
    "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. "
    "Timeout value used: 10000 ms. This timeout value can be configured, see consumers "
    "doc guide to learn more"
)


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return worker_on_virtual_time(monkeypatch, make_room(monkeypatch, tmp_path))


def job(count: int) -> Controller:
    bodies = [bytes([65 + i]) * (i + 1) for i in range(count)]
    return Controller(STUDENT, "size", "{}", lambda _n: bodies, progress=False)


def test_a_delivery_too_old_for_its_time_limit_is_given_back_unrun(room, monkeypatch, caplog):
    monkeypatch.setattr(InlinePool, "seconds_per_shard", 60.0)
    worker = start_worker(
        room, ("s1",), processes=1, prefetch=2, consumer_timeout=100, shard_timeout=50
    )
    with caplog.at_level(logging.WARNING, logger="pimq.worker.daemon"):
        outcome = job(2).run()
    assert [outcome.results[i].value for i in range(2)] == [1, 2]
    # shard 1 waited 60 s behind shard 0: 100 - 5 - 60 = 35 s left < its 50 s limit
    assert "waited 60 s here, too close to the broker's consumer_timeout" in caplog.text
    ran = [i for _v, _j, i in worker.pool.order]
    assert ran == [0, 1]  # each ran once: the given-back one only after its redelivery
    # every batch got the broker's deadline: 100 s less the 5 s margin less its wait
    assert worker.pool.caps == [pytest.approx(95.0), pytest.approx(95.0)]


def test_no_consumer_timeout_no_deadline(room):
    worker = start_worker(room, ("s1",), processes=1, consumer_timeout=0)
    job(3).run()
    assert worker.pool.caps == [float("inf")] * len(worker.pool.caps)


def test_a_shard_held_past_the_brokers_timeout_is_dead_lettered_not_rerun(room, monkeypatch):
    monkeypatch.setattr(InlinePool, "seconds_per_shard", 100.0)
    # the worker does not know the broker's timeout (0): the broker enforces it
    worker = start_worker(room, ("s1",), processes=1, consumer_timeout=0)

    def broker_times_out() -> None:
        for ch in room.broker.channels("pimq-worker", "s1"):
            ch.fail(406, ACK_TIMEOUT)

    room.loop.call_later(50.0, broker_times_out)
    with pytest.raises(JobFailed, match="held past the broker's consumer_timeout"):
        job(1).run()
    assert [i for _v, _j, i in worker.pool.order] == [0]  # it ran once, not again
    assert room.broker.depth("s1", topology.DEAD) == 1
    assert room.broker.depth("s1", topology.TASKS) == 0
