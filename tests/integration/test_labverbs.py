"""The classic lab verbs and pimq status, as a student."""

from __future__ import annotations

import json

from support.helpers import queue_depth, run_json, wait_until


def test_send_and_receive(broker, student, cli):
    for msg in ("hello", "world."):
        out = cli.run("send", "hello", msg)
        assert out.returncode == 0 and f"Sent {msg!r}" in out.stdout
    assert queue_depth(broker, student, "hello") == 2
    out = cli.run("receive", "hello", "--count", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [" [x] Received 'hello'", " [x] Received 'world.'"]
    assert queue_depth(broker, student, "hello") == 0


def test_publish_subscribe_fanout(cli):
    subscribers = [
        cli.start("subscribe", "logs", "--count", "2", "--timeout", "30") for _ in range(2)
    ]
    for proc in subscribers:
        assert proc.stdout.readline().startswith(" [*] Subscribed to logs")
    for msg in ("one", "two"):
        out = cli.run("publish", "logs", msg)
        assert out.returncode == 0 and f"Published {msg!r}" in out.stdout
    for proc in subscribers:
        out, _err = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert out.splitlines() == [" [x] one", " [x] two"]


def test_queue_list_purge_delete(broker, student, cli):
    for i in range(3):
        assert cli.run("send", "jobs", f"m{i}").returncode == 0
    out = cli.run("queue", "list")
    assert out.returncode == 0
    row = [line.split() for line in out.stdout.splitlines() if line.startswith("jobs ")]
    assert row == [["jobs", "3", "0"]]
    assert "Purged 3 message(s)" in cli.run("queue", "purge", "jobs").stdout
    assert queue_depth(broker, student, "jobs") == 0
    assert "Deleted queue jobs" in cli.run("queue", "delete", "jobs").stdout
    assert queue_depth(broker, student, "jobs") is None
    out = cli.run("queue", "delete", "jobs")
    assert out.returncode == 2 and "no queue 'jobs'" in out.stderr


def test_lab_worker_with_acks_loses_nothing(broker, student, cli):
    for i in range(6):
        cli.run("send", "tasks", f"t{i}.")
    out = cli.run(
        "lab-worker",
        "tasks",
        "--acknowledge",
        "--lose-every",
        "3",
        "--prefetch",
        "1",
        "--delay-per-char",
        "0",
        "--count",
        "6",
        "--timeout",
        "10",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Crashed") >= 1
    done = sorted(line.split("'")[1] for line in out.stdout.splitlines() if "Done" in line)
    assert done == [f"t{i}." for i in range(6)]
    assert queue_depth(broker, student, "tasks") == 0


def test_lab_worker_without_acks_loses_messages(broker, student, cli):
    for i in range(6):
        cli.run("send", "tasks2", f"t{i}")
    out = cli.run("lab-worker", "tasks2", "--lose-every", "3", "--prefetch", "1", "--timeout", "2")
    assert out.returncode == 0, out.stderr
    done = [line for line in out.stdout.splitlines() if "Done" in line]
    # auto-ack: the broker pushed all six at once; the crash lost t2 and the
    # three already delivered behind it
    assert [line.split("'")[1] for line in done] == ["t0", "t1"]
    assert queue_depth(broker, student, "tasks2") == 0


def test_host_override(broker, student, cli, tmp_path):
    cfg = tmp_path / "buddy.yaml"
    cfg.write_text(
        f"host: no-such-host.invalid\nport: {broker.port}\nvhost: {student.vhost}\n"
        f"user: {student.user}\npassword: {student.password}\n"
    )
    cfg.chmod(0o600)
    out = cli.run("send", "q", "x", "--config", str(cfg))
    assert out.returncode == 3 and len(out.stderr.strip().splitlines()) == 1
    out = cli.run("send", "q", "x", "--config", str(cfg), "--host", "127.0.0.1")
    assert out.returncode == 0, out.stderr


def test_status(broker, student, cli, start_worker):
    out = cli.run("status", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["workers"] == 0 and doc["vhost"] == student.vhost
    start_worker([student.vhost])
    run_json(cli, "noop", "--shards", "2")
    cli.run("send", "pimq.tasks", "garbage")  # dead-lettered by the worker
    wait_until(lambda: queue_depth(broker, student, "pimq.dead") == 1)
    doc = json.loads(cli.run("status", "--json").stdout)
    assert doc["workers"] == 1
    queues = {q["queue"]: q for q in doc["queues"]}
    assert queues["pimq.tasks"]["messages"] == 0 and queues["pimq.tasks"]["consumers"] == 1
    assert queues["pimq.dead"]["messages"] == 1
    text = cli.run("status").stdout
    assert "workers consuming pimq.tasks: 1" in text
