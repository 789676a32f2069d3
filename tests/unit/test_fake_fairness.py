"""A Pi's processes shared between students (the worker's scheduling rule,
docs/ARCHITECTURE.md): a lone student gets every process; while another
student's shards wait, no student holds every process (a busy-process cap,
and preemption of the hog's newest shard when the other's shard arrives to a
full pool); the waiting student's shards start before the hog's next ones.
In-process broker, real worker, virtual time: the shards are the fake's
``nap`` kind, one virtual second per byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fake_amqp import Room, make_room, start_worker, worker_on_virtual_time

from pimq.protocol import topology
from pimq.protocol.wire import shard_properties


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return worker_on_virtual_time(monkeypatch, make_room(monkeypatch, tmp_path))


def queue_sleeps(room: Room, vhost: str, job: str, count: int, seconds: int) -> str:
    """A job of ``count`` nap shards of ``seconds`` each; its result queue."""
    reply_to = topology.result_queue(job)
    room.broker.declare(vhost, reply_to, topology.RESULTS, reply_to)
    for i in range(count):
        props = shard_properties(job, i, count, "nap", "{}", reply_to, 0, None)
        room.broker.put(vhost, topology.TASKS, topology.TASKS, b"x" * seconds, props)
    return reply_to


def results(room: Room, vhost: str, queue: str) -> list[dict]:
    entries = []
    for msg in room.broker.queue(vhost, queue).messages:
        entries.extend(json.loads(msg.body)["results"])
    return entries


class Probe:
    """Every 0.1 virtual s: processes busy per vhost, and whether s2 has shards waiting."""

    def __init__(self, room: Room, worker) -> None:
        self.room, self.worker = room, worker
        self.samples: list[tuple[float, dict[str, int], bool]] = []
        room.loop.call_later(0, self.tick)

    def tick(self) -> None:
        busy: dict[str, int] = {}
        for tokens in self.worker.pool.running_batches():
            for vhost in {d.link.vhost for d in tokens}:
                busy[vhost] = busy.get(vhost, 0) + 1
        s2 = next(link for link in self.worker.links if link.vhost == "s2")
        s2_waits = bool(s2.pending) or self.room.broker.depth("s2", topology.TASKS) > 0
        self.samples.append((self.room.loop.now, busy, s2_waits))
        self.room.loop.call_later(0.1, self.tick)


def test_a_lone_student_gets_every_process(room):
    worker = start_worker(room, ("s1", "s2"), processes=4)
    probe = Probe(room, worker)
    queue = queue_sleeps(room, "s1", "a1" * 8, 8, 10)
    room.loop.run(lambda: len(results(room, "s1", queue)) == 8)
    assert max(busy.get("s1", 0) for _t, busy, _w in probe.samples) == 4
    assert worker.pool.preempted == []


def test_a_hog_never_holds_every_process_while_another_student_waits(room):
    worker = start_worker(room, ("s1", "s2"), processes=3)
    probe = Probe(room, worker)
    hog = queue_sleeps(room, "s1", "b0" * 8, 12, 30)  # 12 shards of 30 s
    room.loop.run(lambda: False, seconds=5.0)
    assert [busy for _t, busy, _w in probe.samples][-1] == {"s1": 3}  # alone: all of it
    order_before = len(worker.pool.order)
    short = queue_sleeps(room, "s2", "5a" * 8, 4, 1)  # 4 shards of 1 s
    room.loop.run(lambda: len(results(room, "s2", short)) == 4)
    short_done = room.loop.now
    room.loop.run(lambda: len(results(room, "s1", hog)) == 12)

    waiting = [busy for _t, busy, waits in probe.samples if waits]
    assert waiting, "the probe never saw s2 waiting: the test shows nothing"
    assert all(busy.get("s1", 0) < 3 for busy in waiting), waiting
    # the short job's shards all started before any next shard of the hog
    after = worker.pool.order[order_before:]
    first_s1 = next(i for i, (v, _j, _n) in enumerate(after) if v == "s1")
    assert [v for v, _j, _n in after[:first_s1]] == ["s2"] * 4
    assert short_done < 5.0 + 4 * 1 + 1  # it did not wait behind a 30 s shard
    # one hog shard was given back to make room, and ran again later: nothing lost
    assert len(worker.pool.preempted) == 1 and worker.pool.preempted[0][0] == "s1"
    assert sorted(e["index"] for e in results(room, "s1", hog)) == list(range(12))
    assert all(e["ok"] for e in results(room, "s1", hog) + results(room, "s2", short))


def test_one_process_is_not_preempted_back_and_forth(room):
    worker = start_worker(room, ("s1", "s2"), processes=1)
    hog = queue_sleeps(room, "s1", "c1" * 8, 2, 20)
    room.loop.run(lambda: False, seconds=5.0)
    short = queue_sleeps(room, "s2", "5b" * 8, 2, 1)
    room.loop.run(lambda: len(results(room, "s2", short)) == 2)
    room.loop.run(lambda: len(results(room, "s1", hog)) == 2)
    assert worker.pool.preempted == []  # a lone process runs each shard to its end
    # ...and once the hog's running shard ends, the waiting student goes first
    assert [v for v, _j, _n in worker.pool.order] == ["s1", "s2", "s2", "s1"]
