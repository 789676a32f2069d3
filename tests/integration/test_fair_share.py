"""The hog on a real worker and broker: one student's long shards fill both
processes of a worker; another student's short job arrives. The worker gives
one of the hog's shards back at once (preemption), the short job runs to its
end while the hog's first shards still run, none of the hog's shards ends or
starts before the short job's, the hog's job loses nothing, and cancelling it
leaves nothing running and nothing held."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

pytestmark = pytest.mark.timeout(300)

HOG_SHARD_S = 40  # each hog shard sleeps this long: far longer than the short job


def queue_state(broker, vhost: str) -> dict:
    """pimq.tasks' messages (ready + unacked) and unacked, as the broker counts them
    (rabbitmqctl: RabbitMQ 4 without management metrics collection has no message
    counts in the management API)."""
    out = broker.ctl(
        "list_queues", "-p", vhost, "name", "messages", "messages_unacknowledged",
        "--formatter", "json",
    )  # fmt: skip
    return next(q for q in json.loads(out) if q["name"] == "pimq.tasks")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_hog_gives_way_to_a_short_job_and_its_cancel_leaves_nothing_running(
    broker, cli_for, start_worker
):
    hog_student, short_student = broker.take(), broker.take()
    hog_cli, short_cli = cli_for(hog_student), cli_for(short_student)
    worker = start_worker([hog_student.vhost, short_student.vhost], processes=2)

    # 6 shards of 40 s: both processes busy with the hog, 4 shards wait in its window
    hog = hog_cli.start("run", "sleep", *["x" * HOG_SHARD_S] * 6, "--per-char", "1", "--json")
    first = hog.stderr.readline()
    hog_job = re.search(r"job ([0-9a-f]+):", first).group(1)
    wait_for(
        lambda: queue_state(broker, hog_student.vhost).get("messages_unacknowledged", 0) >= 2,
        60,
        "the worker to take the hog's shards",
    )
    time.sleep(1.0)  # both processes are running hog shards

    out = short_cli.run("run", "sleep", "x", "x", "x", "x", "--per-char", "0.2", "--json")
    assert out.returncode == 0, out.stderr
    short = json.loads(out.stdout)
    assert short["result"] == 4 and sum(short["workers"].values()) == 4

    log = worker.text()
    assert hog.poll() is None  # the hog is still running
    preempted = re.findall(
        rf"vhost {hog_student.vhost} held all 2 processes while another vhost waited: "
        rf"job {hog_job} shard (\d+)/6 given back",
        log,
    )
    assert len(preempted) == 1, log
    # the worker logs a line per finished shard (or batch): "job J shard 2/4 sleep vhost V"
    short_lines = re.findall(rf"job {short['job']} shards? [\d,]+/4 sleep vhost", log)
    hog_lines = re.findall(rf"job {hog_job} shards? [\d,]+/6 sleep vhost", log)
    assert len(short_lines) == 4, log  # each of its shards ran once
    assert hog_lines == []  # no hog shard ended meanwhile: the short job did not wait for one

    # Cancelling the hog ends its running shards on the worker and leaves nothing held.
    hog.send_signal(signal.SIGINT)
    _out, err = hog.communicate(timeout=60)
    assert hog.returncode == 130, err
    worker.wait_for(f"job {hog_job} cancelled", timeout=30)
    stopped = re.search(
        rf"job {hog_job} cancelled, dropped (\d+) queued shard\(s\), stopped (\d+) running",
        worker.text(),
    )
    assert stopped and int(stopped.group(2)) >= 1, worker.text()
    wait_for(
        lambda: queue_state(broker, hog_student.vhost).get("messages", 1) == 0,
        30,
        "the hog's shards to leave pimq.tasks",
    )
    state = queue_state(broker, hog_student.vhost)
    assert state.get("messages_unacknowledged", 0) == 0
    # and the worker is free: a new job of the short student runs on both processes
    out = short_cli.run("run", "sleep", "x", "x", "--per-char", "0.1", "--json")
    assert out.returncode == 0, out.stderr
