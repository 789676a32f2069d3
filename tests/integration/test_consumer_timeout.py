"""A broker with a short consumer_timeout (10 s) and shards far longer: the
shard ends once, with a reason, and is never run again (no redelivery loop),
whether the worker knows the broker's timeout (the room's worker.yaml says it:
the shard is cut before it, the channel never closes) or not (the broker
closes the channel; the redelivery is dead-lettered, not run)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support.helpers import ADMIN_PASSWORD, WORKER_PASSWORD
from support.private_broker import Broker, private_broker

from pimq.protocol import topology

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """This module's own broker (overrides the session's): consumer_timeout 10 s."""
    base = tmp_path_factory.mktemp("rabbit-ct") / "node"
    with private_broker(
        base,
        4,
        extra_conf=("consumer_timeout = 10000",),
        admin_password=ADMIN_PASSWORD,
        worker_password=WORKER_PASSWORD,
        management=True,
    ) as b:
        yield b


def dead_letters(broker: Broker, student) -> int:
    conn = broker.connect(student)
    try:
        return conn.channel().queue_declare(topology.DEAD, passive=True).method.message_count
    finally:
        conn.close()


def test_a_worker_that_knows_the_timeout_ends_the_shard_before_it(
    broker, student, cli, start_worker
):
    worker = start_worker(
        [student.vhost], processes=1, extra_config="consumer_timeout: 10\nshard_timeout: 600\n"
    )
    started = time.monotonic()
    out = cli.run("run", "sleep", "x" * 10, "--per-char", "10", timeout=120)  # 100 s of sleep
    wall = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert "the broker's consumer_timeout of 10 s would pass" in out.stderr
    assert "not retried" in out.stderr
    assert wall < 100  # it did not sleep the shard out
    assert dead_letters(broker, student) == 1
    log = worker.text()
    assert log.count("ran past its deadline") == 1  # ended once
    assert "retrying" not in log
    assert "channel closed" not in log  # the broker never had to close it


@pytest.mark.timeout(600)
def test_a_worker_unaware_of_the_timeout_does_not_loop_on_the_redelivery(
    broker, student, cli, start_worker
):
    worker = start_worker(
        [student.vhost], processes=1, extra_config="consumer_timeout: 0\nshard_timeout: 600\n"
    )
    # 300 s of sleep; RabbitMQ enforces the 10 s timeout at its next check (<= ~1 min)
    out = cli.run("run", "sleep", "x" * 30, "--per-char", "10", timeout=400)
    assert out.returncode == 1, out.stderr
    assert "held past the broker's consumer_timeout" in out.stderr
    assert dead_letters(broker, student) == 1
    log = worker.text()
    assert log.count("delivery acknowledgement on channel") == 1  # closed once
    assert log.count("dead-lettered a message") == 1  # its redelivery, not run
    assert "retrying" not in log
