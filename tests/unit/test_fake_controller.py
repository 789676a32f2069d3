"""The controller's logic against the in-process broker, with a real worker
(``pimq.worker``) on the same virtual IOLoop: one result per shard however
often it comes, re-publishing after a refused confirm or a lost connection,
and a failed shard failing the job. Milliseconds each; the real-broker
versions are in tests/integration/."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_amqp import FakeConnection, Room, make_room, start_worker

from pimq.client.controller import Controller
from pimq.config import StudentConfig
from pimq.errors import JobFailed
from pimq.protocol import topology

STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


def squares(count: int):
    return lambda _consumers: [str(i).encode() for i in range(count)]


def run_job(count: int, kind: str = "square") -> tuple[Controller, object]:
    controller = Controller(STUDENT, kind, "{}", squares(count), progress=False)
    return controller, controller.run()


def test_a_job_gathers_one_result_per_shard(room):
    start_worker(room, ("s1",), processes=2)
    _c, outcome = run_job(50)
    assert sorted(outcome.results) == list(range(50))
    assert [outcome.results[i].value for i in range(50)] == [i * i for i in range(50)]
    assert outcome.duplicates == 0
    assert room.broker.depth("s1", topology.TASKS) == 0
    assert topology.result_queue(outcome.job) not in room.broker.vhosts["s1"].queues


def test_a_result_that_comes_again_after_it_was_counted_is_kept_once(room):
    broken: list[int] = []

    def close_worker_channel_after_first_result(ch, exchange, routing_key, body):
        if exchange == topology.RESULTS and not broken:
            broken.append(1)
            room.loop.call_later(0, ch.fail)  # the worker's result is out, its ack is not
        return True

    room.broker.confirm_rule = close_worker_channel_after_first_result
    start_worker(room, ("s1",))
    _c, outcome = run_job(6)
    assert broken
    assert [outcome.results[i].value for i in range(6)] == [i * i for i in range(6)]
    assert outcome.duplicates >= 1  # the redelivered shard's second result was dropped


def test_a_refused_shard_publish_is_published_again(room):
    refused: list[bytes] = []

    def refuse_first_shard(ch, exchange, routing_key, body):
        if exchange == topology.TASKS and ch.conn.user == STUDENT.user and not refused:
            refused.append(body)
            return False
        return True

    room.broker.confirm_rule = refuse_first_shard
    start_worker(room, ("s1",))
    _c, outcome = run_job(4)
    assert refused == [b"0"]
    assert [outcome.results[i].value for i in range(4)] == [0, 1, 4, 9]
    shard0 = [
        m for v, m in room.broker.published if m.exchange == topology.TASKS and m.body == b"0"
    ]
    assert len(shard0) == 2


def test_a_lost_connection_mid_publish_reconnects_and_publishes_what_is_missing(room):
    dropped: list[int] = []

    def drop_controller_after_three_shards(ch, exchange, routing_key, body):
        if exchange == topology.TASKS and ch.conn.user == STUDENT.user:
            if len(dropped) == 2:
                room.loop.call_later(0, ch.conn.drop)  # before these confirms arrive
            dropped.append(1)
        return True

    room.broker.confirm_rule = drop_controller_after_three_shards
    start_worker(room, ("s1",))
    controller, outcome = run_job(8)
    assert controller.generation == 2
    assert [outcome.results[i].value for i in range(8)] == [i * i for i in range(8)]
    # Every shard was published at least once more than the 8 of a quiet run
    # would need only where no confirm or result came back for it.
    assert len(dropped) > 8


def test_a_shard_that_fails_on_every_attempt_fails_the_job(room):
    start_worker(room, ("s1",))
    controller = Controller(STUDENT, "boom", "{}", lambda _n: [b"1", b"2"], progress=False)
    with pytest.raises(JobFailed, match=r"shard \d of job .* failed .*bad shard"):
        controller.run()


def test_wrong_credentials_fail_at_once(room):
    bad = StudentConfig(vhost="s1", user="stud1", password="nope", host="fake")
    controller = Controller(bad, "square", "{}", squares(1), progress=False)
    with pytest.raises(Exception, match="wrong user name or password"):
        controller.run()
    assert not room.broker.connections or all(c.user != "stud1" for c in room.broker.connections)
    assert FakeConnection.broker is room.broker
