"""The worker's metrics (``pimq.worker.metrics``): the counts a worker keeps as
shards end (on the in-process broker of ``support.fake_amqp``), the textfile
it writes for the node exporter, and what a missing folder does (nothing)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.fake_amqp import WORKER, Room, make_room, queue_shards, start_worker
from test_pool_limits import SLEEP_30, run_pool

from pimq.config import load_worker_config
from pimq.errors import ConfigError
from pimq.protocol import topology
from pimq.worker import metrics
from pimq.worker.daemon import Worker
from pimq.worker.retry import MAX_ATTEMPTS


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


def settled(room: Room, worker: Worker, vhosts: tuple[str, ...]) -> bool:
    held = sum(len(ch.unacked) for v in vhosts for ch in room.broker.channels(WORKER[0], v))
    tasks = sum(room.broker.depth(v, topology.TASKS) for v in vhosts)
    return tasks == 0 and held == 0 and worker.pool.busy == 0


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a textfile: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_done_failed_and_dead_lettered_shards_are_counted_per_student(room, tmp_path):
    path = tmp_path / "textfile" / "pimq-worker.prom"
    path.parent.mkdir()
    worker = start_worker(room, ("s1", "s2"), processes=2, metrics=str(path))
    queue_shards(room, "s1", "a1" * 8, "square", [str(i).encode() for i in range(7)])
    queue_shards(room, "s2", "b2" * 8, "boom", [b"1", b"2"])  # raises every time
    room.loop.run(lambda: settled(room, worker, ("s1", "s2")), seconds=60)

    m = worker.metrics
    assert m.count("s1", metrics.DONE) == 7
    assert m.count("s1", metrics.FAILED) == m.count("s1", metrics.DEAD_LETTERED) == 0
    assert m.count("s2", metrics.DONE) == 0
    # each boom shard: MAX_ATTEMPTS - 1 retries (failed), then dead-lettered once
    assert m.count("s2", metrics.FAILED) == 2 * (MAX_ATTEMPTS - 1)
    assert m.count("s2", metrics.DEAD_LETTERED) == 2
    assert room.broker.depth("s2", topology.DEAD) == 2  # what the counts say happened
    assert m.kills == {}  # a raising shard is no limit kill

    worker.write_metrics()
    got = samples(path)
    assert got[("pimq_worker_shards_total", (("outcome", "done"), ("student", "s1")))] == 7
    assert got[("pimq_worker_shards_total", (("outcome", "failed"), ("student", "s2")))] == 4
    assert got[("pimq_worker_shards_total", (("outcome", "dead_lettered"), ("student", "s2")))] == 2
    # run time: every run of every shard, in the fake pool's virtual seconds
    per_shard = worker.pool.seconds_per_shard
    s1_seconds = got[("pimq_worker_shard_seconds_total", (("student", "s1"),))]
    s2_seconds = got[("pimq_worker_shard_seconds_total", (("student", "s2"),))]
    assert s1_seconds == pytest.approx(7 * per_shard)
    assert s2_seconds == pytest.approx(2 * MAX_ATTEMPTS * per_shard)
    assert got[("pimq_worker_processes", ())] == 2
    assert got[("pimq_worker_processes_busy", ())] == 0
    # no pi label in the file: the node exporter's target adds it (pi=<inventory name>)
    assert all("pi" not in dict(labels) for _name, labels in got)
    # readable by the node exporter whatever the worker's umask, and no temp file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(path.parent)) == ["pimq-worker.prom"]


def test_a_shard_ended_at_its_time_limit_counts_as_a_kill(room, tmp_path):
    worker = start_worker(room, ("s1",), processes=1)
    reason = "time limit 5 s exceeded"  # what ShardPool.expire reports (next test)
    worker.pool.execute = lambda *task: (False, 5.0, b"", reason)
    queue_shards(room, "s1", "c3" * 8, "square", [b"1"])
    room.loop.run(lambda: settled(room, worker, ("s1",)), seconds=60)
    m = worker.metrics
    assert m.kills == {"s1": MAX_ATTEMPTS}  # every attempt ended at the limit
    assert m.count("s1", metrics.FAILED) == MAX_ATTEMPTS - 1
    assert m.count("s1", metrics.DEAD_LETTERED) == 1
    assert m.seconds["s1"] == pytest.approx(MAX_ATTEMPTS * worker.pool.seconds_per_shard)


def test_the_real_pools_limit_reasons_are_kills_and_a_raise_is_not():
    def action(pool, loop):
        pool.submit(["slow"], [SLEEP_30], limit=0.3)
        pool.submit(["boom"], [("nokind", b"x", "{}", 1)], limit=5)

        def tick():
            pool.expire()
            loop.call_later(0.1, tick)

        tick()

    got, _pids = run_pool(action)
    outcomes = dict(got)
    assert metrics.is_limit_kill(outcomes["slow"][3])
    assert outcomes["boom"][0] is False and not metrics.is_limit_kill(outcomes["boom"][3])
    assert metrics.is_limit_kill("memory limit 512 MiB exceeded (MemoryError)")
    assert metrics.is_limit_kill("the broker's consumer_timeout of 1800 s would pass")


def test_a_missing_folder_never_stops_the_worker_and_writing_resumes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pimq.worker.metrics")
    m = metrics.WorkerMetrics(4)
    m.shard("alice", metrics.DONE, 3)
    path = tmp_path / "absent" / "pimq-worker.prom"
    writer = metrics.TextfileWriter(m, str(path))
    assert writer.write() is False
    assert writer.write() is False
    assert len([r for r in caplog.records if "not written" in r.message]) == 1  # said once
    path.parent.mkdir()
    assert writer.write() is True
    got = samples(path)
    assert got[("pimq_worker_shards_total", (("outcome", "done"), ("student", "alice")))] == 3
    assert any("written to" in r.message and "again" in r.message for r in caplog.records)


def test_the_textfile_is_rewritten_every_few_seconds_on_the_ioloop(room, tmp_path):
    writes = []
    metrics.every(room.loop, metrics.WRITE_EVERY, lambda: writes.append(room.loop.now))
    room.loop.run(lambda: False, seconds=3 * metrics.WRITE_EVERY + 0.5)
    assert writes == [0.0, 5.0, 10.0, 15.0]


def test_a_write_that_raises_is_logged_and_the_next_one_still_comes(room, caplog):
    calls = []

    def flaky() -> None:
        calls.append(room.loop.now)
        if len(calls) == 1:
            raise ValueError("boom")

    metrics.every(room.loop, 1.0, flaky)
    room.loop.run(lambda: False, seconds=2.5)
    assert calls == [0.0, 1.0, 2.0]
    assert any("metrics failed" in r.message for r in caplog.records)


def test_unknown_outcomes_are_refused():
    with pytest.raises(ValueError):
        metrics.WorkerMetrics().shard("alice", "lost")


def base_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(f"host: head\nuser: w\npassword: pw\nvhosts: [a]\n{extra}")
    return path


def test_the_worker_config_names_an_absolute_prom_file_or_none(tmp_path):
    assert load_worker_config(base_config(tmp_path, "")).metrics == ""
    assert load_worker_config(base_config(tmp_path, "metrics: ''\n")).metrics == ""
    cfg = load_worker_config(base_config(tmp_path, "metrics: /var/lib/pimq-metrics/w.prom\n"))
    assert cfg.metrics == "/var/lib/pimq-metrics/w.prom"
    for bad in ("relative/w.prom", "/var/lib/w.txt", "[1]"):
        with pytest.raises(ConfigError, match="metrics must be"):
            load_worker_config(base_config(tmp_path, f"metrics: {bad}\n"))


def test_without_prometheus_client_the_worker_runs_without_metrics(room, tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "available", lambda: False)
    worker = start_worker(room, ("s1",), metrics=str(tmp_path / "w.prom"))
    assert worker.textfile is None
    queue_shards(room, "s1", "d4" * 8, "square", [b"3"])
    room.loop.run(lambda: settled(room, worker, ("s1",)), seconds=60)
    assert worker.metrics.count("s1", metrics.DONE) == 1  # still counted, just not written
    assert not (tmp_path / "w.prom").exists()
