"""The real pool (forked processes, pika's IOLoop) ends a shard past its time
limit and the running shards of a stopped job, by ending the process that
runs them (and with it any sandbox it holds open)."""

from __future__ import annotations

import os

from pika.adapters.select_connection import IOLoop

from pimq.worker.pool import ShardPool

SLEEP_30 = ("sleep", b"x" * 30, '{"per_char": 1.0}', 0)  # 30 s of sleep
QUICK = ("sleep", b"x", '{"per_char": 0.0}', 1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_pool(action) -> tuple[list, list[int]]:
    loop = IOLoop()
    got: list = []

    def on_results(tokens, outcomes):
        got.extend(zip(tokens, outcomes, strict=True))
        if len(got) == 2:
            loop.stop()

    pool = ShardPool(2, loop, on_results)
    pool.start()
    pids = [c.pid for c in pool.children.values()]
    action(pool, loop)
    loop.call_later(20, loop.stop)  # a safety net: the test fails below if hit
    loop.start()
    pool.shutdown(force=True)
    return got, pids


def test_a_shard_past_its_time_limit_is_ended_with_the_reason():
    def action(pool, loop):
        pool.submit(["slow"], [SLEEP_30], limit=0.5)
        pool.submit(["quick"], [QUICK], limit=0.5)

        def tick():
            pool.expire()
            loop.call_later(0.1, tick)

        tick()

    got, pids = run_pool(action)
    outcomes = dict(got)
    assert outcomes["quick"][0] is True
    assert outcomes["slow"][0] is False and outcomes["slow"][3] == "time limit 0.5 s exceeded"
    assert sum(alive(p) for p in pids) == 0  # the old children are gone (shutdown + the kill)


def test_the_running_shards_of_a_stopped_job_are_ended():
    def action(pool, loop):
        pool.submit([("job-a", 0)], [SLEEP_30])
        pool.submit([("job-b", 0)], [SLEEP_30])
        slow = [c.pid for c in pool.children.values()]

        def stop():
            assert pool.stop_where(lambda t: t[0] == "job-a", "job cancelled") == 1
            assert pool.stop_where(lambda t: t[0] == "job-b", "job done") == 1
            assert not any(alive(p) for p in slow)

        loop.call_later(0.3, stop)

    got, _pids = run_pool(action)
    assert sorted((t[0], o[3]) for t, o in got) == [
        ("job-a", "job cancelled"),
        ("job-b", "job done"),
    ]


def test_a_batch_cut_short_by_the_brokers_deadline_ends_with_that_reason():
    why = "the broker's consumer_timeout of 20 s would pass"

    def action(pool, loop):
        pool.submit(["slow"], [SLEEP_30], limit=600, cap=0.5, cap_reason=why)
        pool.submit(["quick"], [QUICK], limit=600, cap=0.5, cap_reason=why)
        assert sorted(map(tuple, pool.running())) == [tuple("quick"), tuple("slow")]

        def tick():
            pool.expire()
            loop.call_later(0.1, tick)

        tick()

    got, _pids = run_pool(action)
    outcomes = dict(got)
    assert outcomes["quick"][0] is True  # done before the deadline: untouched
    assert outcomes["slow"][0] is False and outcomes["slow"][3] == why
