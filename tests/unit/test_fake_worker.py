"""The worker's logic against the in-process broker (``support.fake_amqp``):
fair scheduling across vhosts, batching, coalesced acks, retry and
dead-lettering, and what happens when a confirm is refused or a channel
closes between a result's publish and the shard's ack. Milliseconds each;
the same paths against a real RabbitMQ are in tests/integration/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fake_amqp import WORKER, Room, make_room, queue_shards, start_worker

from pimq.protocol import topology
from pimq.protocol.wire import H_ATTEMPT, H_REASON, H_TRACEBACK
from pimq.worker.daemon import Worker
from pimq.worker.retry import MAX_ATTEMPTS


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


def results(room: Room, vhost: str, queue: str) -> list[dict]:
    """Every shard entry of every result message in ``queue``."""
    entries = []
    for msg in room.broker.queue(vhost, queue).messages:
        entries.extend(json.loads(msg.body)["results"])
    return entries


def room_jobs(room: Room) -> str:
    import os

    return os.environ["PIMQ_JOBS_DIR"]


def settled(room: Room, worker: Worker) -> bool:
    """No shard waits, runs or is held unacked anywhere."""
    held = sum(len(ch.unacked) for ch in room.broker.channels(WORKER[0], "s1"))
    held += sum(len(ch.unacked) for ch in room.broker.channels(WORKER[0], "s2"))
    tasks = room.broker.depth("s1", topology.TASKS) + room.broker.depth("s2", topology.TASKS)
    return tasks == 0 and held == 0 and worker.pool.busy == 0


def test_vhosts_share_the_pool_in_turn(room):
    worker = start_worker(room, ("s1", "s2"))
    queue_shards(room, "s1", "a1" * 8, "square", [b"1"] * 8)  # s1 queues first
    queue_shards(room, "s2", "b2" * 8, "square", [b"2"] * 8)
    room.loop.run(lambda: settled(room, worker), seconds=60)
    order = [vhost for vhost, _job, _i in worker.pool.order]
    assert sorted(order) == ["s1"] * 8 + ["s2"] * 8
    # s1's first shard starts alone (s2's have not arrived yet); from then on
    # the one process alternates between the two students while both wait,
    # s2 first: s1 has already had the pool (the fair share's usage).
    assert order == ["s1", "s2"] * 8, order


def test_quick_shards_travel_in_batches_and_acks_are_coalesced(room):
    worker = start_worker(room, ("s1",), processes=2)
    queue = queue_shards(room, "s1", "c3" * 8, "square", [str(i).encode() for i in range(300)])
    room.loop.run(lambda: settled(room, worker), seconds=60)
    entries = results(room, "s1", queue)
    assert sorted(e["index"] for e in entries) == list(range(300))
    assert all(e["ok"] and e["value"] == e["index"] ** 2 for e in entries)
    messages = len(room.broker.queue("s1", queue).messages)
    assert messages < 300 and max(worker.pool.batches) > 1  # batched once the pace is quick
    assert len(room.broker.acks) < 300  # one ack settles many shards
    assert any(multiple for _tag, multiple in room.broker.acks)


def test_a_batch_holds_one_students_shards(room):
    """Two students' quick shards wait together: each batch is one student's, so
    one's shard never waits behind the other's (a pace learnt on quick jobs
    batches the first shards of a slow one too)."""
    worker = start_worker(room, ("s1", "s2"), processes=2)
    queues = {
        v: queue_shards(room, v, job * 8, "square", [str(i).encode() for i in range(300)])
        for v, job in (("s1", "a7"), ("s2", "b8"))
    }
    room.loop.run(lambda: settled(room, worker), seconds=60)
    for vhost, queue in queues.items():
        entries = results(room, vhost, queue)
        assert sorted(e["value"] for e in entries) == sorted(i**2 for i in range(300))
    assert max(worker.pool.batches) > 1  # they did travel in batches
    mixed = [v for v in worker.pool.batch_vhosts if len(v) != 1]
    assert mixed == [], f"{len(mixed)} batches held both students' shards"


def test_a_failing_shard_is_retried_then_dead_lettered_with_its_traceback(room):
    worker = start_worker(room, ("s1",))
    queue = queue_shards(room, "s1", "d4" * 8, "boom", [b"7"])
    room.loop.run(lambda: settled(room, worker) and results(room, "s1", queue), seconds=60)
    retries = [
        m.properties.headers[H_ATTEMPT]
        for v, m in room.broker.published
        if m.exchange == topology.TASKS and v == "s1"
    ]
    assert retries == list(range(1, MAX_ATTEMPTS))
    assert len(worker.pool.order) == MAX_ATTEMPTS
    (dead,) = room.broker.queue("s1", topology.DEAD).messages
    assert dead.body == b"7"
    assert dead.properties.headers[H_REASON] == (
        f"job raised on all {MAX_ATTEMPTS} attempts: ValueError: bad shard 7"
    )
    assert "raise ValueError" in dead.properties.headers[H_TRACEBACK]
    (failure,) = results(room, "s1", queue)
    assert failure["index"] == 0 and not failure["ok"] and "bad shard 7" in failure["error"]


def test_a_message_that_is_no_shard_is_dead_lettered_and_the_worker_goes_on(room):
    worker = start_worker(room, ("s1",))
    room.broker.put("s1", topology.TASKS, topology.TASKS, b"junk", None)
    queue = queue_shards(room, "s1", "e5" * 8, "square", [b"3"])
    room.loop.run(lambda: settled(room, worker) and results(room, "s1", queue), seconds=60)
    (dead,) = room.broker.queue("s1", topology.DEAD).messages
    assert dead.body == b"junk"
    assert dead.properties.headers[H_REASON].startswith("unparsable message: header pimq-job")
    assert [e["value"] for e in results(room, "s1", queue)] == [9]


def test_a_refused_result_is_published_again_not_the_shard_rerun(room):
    refused: list[bytes] = []

    def refuse_first_result(ch, exchange, routing_key, body):
        if exchange == topology.RESULTS and not refused:
            refused.append(body)
            return False
        return True

    room.broker.confirm_rule = refuse_first_result
    worker = start_worker(room, ("s1",))
    queue = queue_shards(room, "s1", "f6" * 8, "square", [b"4"])
    room.loop.run(lambda: settled(room, worker) and results(room, "s1", queue), seconds=60)
    assert refused, "the rule never refused a result"
    assert [i for _v, _j, i in worker.pool.order] == [0]  # ran once; its result went again
    assert [e["value"] for e in results(room, "s1", queue)] == [16]
    assert room.broker.depth("s1", topology.DEAD) == 0


def test_a_batch_refused_as_a_whole_goes_in_parts_each_shard_run_once(room):
    """A batch of results over the result queue's byte cap, whose results fit one
    by one (quick shards on a loaded worker batch up): split until they fit,
    none dead-lettered, no shard run again."""
    refused: list[int] = []

    def refuse_batches(ch, exchange, routing_key, body):
        if exchange == topology.RESULTS and len(json.loads(body)["results"]) > 1:
            refused.append(len(json.loads(body)["results"]))
            return False
        return True

    room.broker.confirm_rule = refuse_batches
    worker = start_worker(room, ("s1",), processes=2)
    queue = queue_shards(room, "s1", "d4" * 8, "square", [str(i).encode() for i in range(300)])
    room.loop.run(lambda: settled(room, worker), seconds=120)
    assert refused, "no batch was ever refused: the test checks nothing"
    entries = results(room, "s1", queue)
    assert sorted(e["index"] for e in entries) == list(range(300))
    assert all(e["ok"] and e["value"] == e["index"] ** 2 for e in entries)
    assert sorted(i for _v, _j, i in worker.pool.order) == list(range(300))  # each ran once
    assert room.broker.depth("s1", topology.DEAD) == 0


def test_a_result_the_cap_always_refuses_dead_letters_the_shard_once(room):
    from pimq.worker.vhost import RESULT_TRIES

    (Path(room_jobs(room)) / "big.py").write_text(
        "def split(a, p, n): return [b'']\n"
        "def run(body, params): return 'x' * 5000\n"
        "def join(r, p): return r\n"
    )
    queue_name = topology.result_queue("b1" * 8)
    room.broker.max_bytes[queue_name] = 1000  # the job's result queue at a tiny cap
    worker = start_worker(room, ("s1",))
    queue = queue_shards(room, "s1", "b1" * 8, "big", [b"1"])
    room.loop.run(lambda: settled(room, worker) and results(room, "s1", queue), seconds=120)
    assert [i for _v, _j, i in worker.pool.order] == [0]  # never rerun
    big = [m for v, m in room.broker.refused if m.routing_key == queue]
    assert len(big) == RESULT_TRIES
    assert room.broker.depth("s1", topology.DEAD) == 1
    (failure,) = results(room, "s1", queue)  # the small failure result fits
    assert failure["ok"] is False and "result queue is at the room's cap" in failure["error"]


def test_a_channel_closed_between_result_and_ack_redelivers_the_shard(room):
    broken: list[int] = []

    def close_after_first_result(ch, exchange, routing_key, body):
        if exchange == topology.RESULTS and not broken:
            broken.append(1)
            room.loop.call_later(0, ch.fail)  # before the confirm and the ack
        return True

    room.broker.confirm_rule = close_after_first_result
    worker = start_worker(room, ("s1",))
    queue = queue_shards(room, "s1", "a7" * 8, "square", [b"5"])
    room.loop.run(
        lambda: settled(room, worker) and len(results(room, "s1", queue)) == 2, seconds=60
    )
    link = worker.links[0]
    assert link.generation == 2  # it reconnected
    assert [i for _v, _j, i in worker.pool.order] == [0, 0]
    # The shard was never acked before its result was confirmed: it came back,
    # so the controller sees the result twice and keeps one (test_fake_controller).
    assert [e["value"] for e in results(room, "s1", queue)] == [25, 25]


def test_a_cancelled_job_is_dropped_from_what_waits(room):
    worker = start_worker(room, ("s1",))
    worker.pool.size = 0  # nothing runs: everything waits locally
    queue_shards(room, "s1", "b8" * 8, "square", [b"1"] * 5)
    room.loop.run(lambda: len(worker.links[0].pending) == 2, seconds=5)
    room.broker.put(
        "s1", topology.CONTROL, "", b'{"cancel": "' + b"b8" * 8 + b'"}', topology.CONTROL_PROPS
    )
    worker.pool.size = 1
    room.loop.run(lambda: settled(room, worker), seconds=60)
    assert worker.pool.order == []  # not one shard of the cancelled job ran


def test_quick_shards_deepen_the_prefetch_window(room):
    worker = start_worker(room, ("s1",))
    assert worker.links[0].prefetch == 2  # the floor, before any shard ran
    queue_shards(room, "s1", "c9" * 8, "square", [b"1"] * 40)
    room.loop.run(lambda: settled(room, worker), seconds=600)
    assert worker.links[0].prefetch > 2


def test_a_new_window_is_a_new_consumer_that_starts_once_what_is_held_fits(room):
    """Per-consumer prefetch (global QoS is deprecated; the fake refuses it):
    the window grows for tiny quick shards, then shrinks for 1 MiB ones, and
    each new consumer starts only when the link holds nothing of the old one,
    so the link never holds more than one window."""
    worker = start_worker(room, ("s1",))
    queue = queue_shards(room, "s1", "d0" * 8, "size", [b"x"] * 60 + [b"y" * 2**20] * 40)
    room.loop.run(lambda: settled(room, worker), seconds=600)
    assert sorted(e["value"] for e in results(room, "s1", queue)) == [1] * 60 + [2**20] * 40
    (channel,) = [
        ch for conn in room.broker.connections if conn.user == WORKER[0] for ch in conn.channels
    ]
    windows = [prefetch for prefetch, _held in channel.consumed]
    assert windows[0] == 2 and max(windows) > 2, windows  # it grew...
    assert windows[-1] < max(windows), windows  # ...and shrank for the big shards
    assert all(held == 0 for _prefetch, held in channel.consumed), channel.consumed


def test_a_dead_letter_refused_by_a_full_pimq_dead_is_kept_and_not_sent_round_at_once(room):
    from pimq.worker.retry import REFUSED_BACKOFF

    room.broker.declare("s1", topology.DEAD, topology.DEAD, "")
    room.broker.max_bytes[topology.DEAD] = 0  # pimq.dead at its cap: refuses everything
    worker = start_worker(room, ("s1",))
    room.broker.put("s1", topology.TASKS, topology.TASKS, b"junk", None)  # no shard
    room.loop.run(lambda: False, seconds=10 * REFUSED_BACKOFF + 1)
    tries = [m for v, m in room.broker.refused if m.exchange == topology.DEAD]
    # given back and dead-lettered again every REFUSED_BACKOFF s, not in a tight loop
    assert 5 <= len(tries) <= 11, len(tries)
    held = sum(len(ch.unacked) for ch in room.broker.channels(WORKER[0], "s1"))
    assert room.broker.depth("s1", topology.TASKS) + held == 1  # kept, not lost
    assert worker.pool.busy == 0
