"""Flood: one student publishes into every queue they may have until the room's
caps refuse them, on a broker whose memory and disk alarms are set low enough
that a flood the caps did not bound fires one. No alarm fires, and another
student's job, running meanwhile, completes exact. Then the control: the same
thresholds, a vhost without caps, and the flood does fire an alarm (so the
thresholds could fire, and the log line the first half looks for is the one
RabbitMQ writes).

The arithmetic is roles/pimq_broker/README.md's, scaled down: one capped vhost
holds at most 2 x data cap + (max-queues - 2) x queue cap of message bodies.
The alarms are set at 4 x that above what the broker uses when the flood
starts: RSS for memory (RabbitMQ's own measure), free bytes of its data
directory (a tmpfs of its own, so nothing else on the machine moves it)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pika
import pika.exceptions as px
import pytest
from support.caps import confirmed_channel, converge, fill
from support.helpers import ADMIN_PASSWORD, WORKER_PASSWORD, grep_count, run_json
from support.private_broker import Broker, private_broker

from pimq.protocol import topology

pytestmark = pytest.mark.timeout(420)

MIB = 1024 * 1024
CAPS = {"queue_bytes": MIB, "queue_length": 1000, "data_bytes": 8 * MIB, "data_length": 10000}
MAX_QUEUES = 16
#: one capped vhost at most: pimq.tasks and pimq.dead at the data cap, the rest at the queue cap
BOUND = 2 * CAPS["data_bytes"] + (MAX_QUEUES - 2) * CAPS["queue_bytes"]
HEADROOM = 4 * BOUND
MESSAGE = 256 * 1024  # persistent bodies: they go to disk as well as memory
ALARM = "resource limit alarm set"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """This module's own broker (overrides the session's), its data on a 400 MiB tmpfs."""
    base = tmp_path_factory.mktemp("rabbit-flood") / "node"
    with private_broker(
        base,
        4,
        admin_password=ADMIN_PASSWORD,
        worker_password=WORKER_PASSWORD,
        management=True,
        container=os.environ.get("PIMQ_RABBITMQ", ""),
        disk_mb=400,
    ) as b:
        yield b


def set_alarms_above_now(broker: Broker) -> dict[str, int]:
    """Memory and disk alarms HEADROOM past the broker's present use; the figures."""
    now = broker.status()
    rss, free = now["memory"]["total"]["rss"], now["disk_free"]
    memory_limit, disk_limit = rss + HEADROOM, free - HEADROOM
    assert disk_limit > 0, free
    broker.ctl("set_vm_memory_high_watermark", "absolute", str(memory_limit))
    broker.ctl("set_disk_free_limit", str(disk_limit))
    assert broker.status()["alarms"] == []
    return {"rss": rss, "memory_limit": memory_limit, "free": free, "disk_limit": disk_limit}


def flood(broker: Broker, student) -> tuple[int, int]:
    """Every queue ``student`` may declare, filled until refused: (queues, bytes taken).
    Half of them named as an upload's queues are (``pimq.data.<upload>.<pi>``): those
    have the cap of any queue too."""
    conn, ch = confirmed_channel(broker, student)
    names = [topology.TASKS, topology.DEAD] + [
        topology.data_queue(f"flood{i}", "pi1") if i % 2 else f"flood{i}"
        for i in range(MAX_QUEUES - 2)
    ]
    taken = 0
    try:
        for name in names:
            ch.queue_declare(name, durable=True)
            taken += fill(ch, name, MESSAGE, persistent=True)
        with pytest.raises(px.ChannelClosedByBroker) as refused:
            ch.queue_declare("one-too-many", durable=True)
        assert "queue limit" in str(refused.value), refused.value
    finally:
        if conn.is_open:
            conn.close()
    return len(names), taken


def flood_uncapped(broker: Broker, student, most: int) -> int:
    """Publish persistent bodies into one uncapped queue until the broker blocks
    the connection (an alarm) or ``most`` bytes went in: bytes taken."""
    conn = broker.connect(student, blocked_connection_timeout=10)
    taken = 0
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("uncapped", durable=True)
        props = pika.BasicProperties(delivery_mode=2)
        while taken < most:
            ch.basic_publish("", "uncapped", b"y" * MESSAGE, properties=props)
            taken += MESSAGE
    except (px.ConnectionBlockedTimeout, px.AMQPConnectionError):
        pass  # blocked: the alarm is up
    finally:
        if conn.is_open:
            conn.close()
    return taken


def test_a_flooding_student_trips_no_alarm_and_another_students_job_completes(
    broker, tmp_path, cli_for, start_worker, shakespeare
):
    flooder, worker_student, control = broker.take(), broker.take(), broker.take()
    converge(broker, tmp_path, flooder.vhost, CAPS)
    converge(broker, tmp_path, worker_student.vhost, CAPS)
    broker.ctl("set_vhost_limits", "-p", flooder.vhost, f'{{"max-queues": {MAX_QUEUES}}}')
    figures = set_alarms_above_now(broker)
    start_worker([worker_student.vhost], processes=2)
    cli = cli_for(worker_student)

    job = {}
    runner = threading.Thread(
        target=lambda: job.update(
            run_json(cli, "wordcount", "--word", "more", str(shakespeare), "--shards", "100")
        )
    )
    runner.start()
    queues, taken = flood(broker, flooder)
    runner.join(timeout=300)
    assert not runner.is_alive()

    assert (queues, taken) == (MAX_QUEUES, BOUND)  # every queue full, to its cap exactly
    assert job["result"] == grep_count(shakespeare, "more")
    assert sum(job["workers"].values()) == 100
    # and with the flooder's queues still full, another job of the other student
    again = run_json(cli, "wordcount", "--word", "more", str(shakespeare), "--shards", "20")
    assert again["result"] == job["result"]
    after = broker.status()
    assert after["alarms"] == [], after["alarms"]
    assert ALARM not in broker.log_text()
    print(
        f"flood: {queues} queues, {taken / MIB:.0f} MiB of bodies; RSS "
        f"{figures['rss'] / MIB:.0f} -> {after['memory']['total']['rss'] / MIB:.0f} MiB "
        f"(alarm at {figures['memory_limit'] / MIB:.0f}); disk free "
        f"{figures['free'] / MIB:.0f} -> {after['disk_free'] / MIB:.0f} MiB "
        f"(alarm at {figures['disk_limit'] / MIB:.0f})"
    )

    # The control: the same thresholds, no caps on this vhost, and an alarm fires.
    uncapped = flood_uncapped(broker, control, most=3 * HEADROOM)
    alarms = broker.status()["alarms"]
    assert alarms, f"no alarm after {uncapped / MIB:.0f} MiB without caps"
    assert ALARM in broker.log_text()
    print(f"control: {uncapped / MIB:.0f} MiB without caps, then alarms {alarms}")
