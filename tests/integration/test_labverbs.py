"""The classic lab verbs and pimq status, as a student."""

from __future__ import annotations

import json

import pika
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
    assert row == [["jobs", "3", "0", "durable"]]
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


def test_rpc_serve_and_call(broker, student, cli):
    server = cli.start("rpc", "serve", "rpc_queue", "--count", "4", "--timeout", "60")
    assert server.stdout.readline().startswith(" [x] Awaiting RPC requests on rpc_queue")
    out = cli.run("rpc", "call", "rpc_queue", "10", "20", "x", "--timeout", "30")
    assert out.returncode == 0, out.stderr
    got = [line for line in out.stdout.splitlines() if line.startswith(" [.] Got")]
    assert got == [
        " [.] Got '55' for '10'",
        " [.] Got '6765' for '20'",
        " [.] Got \"error: fib needs a whole number, got 'x'\" for 'x'",
    ]
    # the wire contract, seen from a bare pika client: reply_to + correlation_id
    conn = broker.connect(student)
    ch = conn.channel()
    reply = ch.queue_declare("", exclusive=True).method.queue
    props = pika.BasicProperties(reply_to=reply, correlation_id="abc-123")
    ch.basic_publish("", "rpc_queue", b"7", props)
    for method, rprops, body in ch.consume(reply, auto_ack=True, inactivity_timeout=30):
        assert method is not None, "no reply"
        assert (rprops.correlation_id, body) == ("abc-123", b"13")
        break
    conn.close()
    out, _err = server.communicate(timeout=60)
    assert server.returncode == 0
    assert " [.] fib(7) = 13" in out.splitlines()
    assert queue_depth(broker, student, "rpc_queue") == 0


def test_rpc_call_without_a_server_times_out(broker, student, cli):
    out = cli.run("rpc", "call", "nobody", "5", "--timeout", "1")
    assert out.returncode == 4
    assert "no reply within 1 s to 1 request(s): '5'" in out.stderr
    assert queue_depth(broker, student, "nobody") == 1  # the request waits for a server


def test_topic_publish_subscribe(cli):
    kern = cli.start(
        "subscribe", "topic_logs", "--bind", "kern.*", "--count", "2", "--timeout", "30"
    )
    crit = cli.start(
        "subscribe", "topic_logs", "--bind", "*.critical", "--count", "2", "--timeout", "30"
    )
    every = cli.start("subscribe", "topic_logs", "--bind", "#", "--count", "4", "--timeout", "30")
    for proc in (kern, crit, every):
        assert proc.stdout.readline().startswith(" [*] Subscribed to topic_logs (")
    for key in ("kern.info", "app.critical", "kern.critical", "app.info"):
        out = cli.run("publish", "topic_logs", f"msg {key}", "--routing-key", key)
        assert out.returncode == 0 and f"with routing key {key}" in out.stdout
    outs = [p.communicate(timeout=60)[0].splitlines() for p in (kern, crit, every)]
    assert outs[0] == [" [x] kern.info: msg kern.info", " [x] kern.critical: msg kern.critical"]
    assert outs[1] == [
        " [x] app.critical: msg app.critical",
        " [x] kern.critical: msg kern.critical",
    ]
    assert len(outs[2]) == 4


def test_durable_and_transient_queues_across_a_broker_restart(broker, student, cli):
    assert cli.run("send", "keep", "stays", "--durable").returncode == 0
    out = cli.run("send", "lose", "goes", "--transient")
    if "transient_nonexcl_queues" in broker.denied:  # RabbitMQ 4, as the tests configure it
        assert out.returncode == 2, out.stdout + out.stderr
        assert "does not permit transient queues" in out.stderr, out.stderr
        assert "--durable" in out.stderr and "Traceback" not in out.stderr
        assert queue_depth(broker, student, "lose") is None  # nothing declared
    else:
        assert out.returncode == 0, out.stderr
        assert queue_depth(broker, student, "lose") == 1
    broker.restart_app()
    assert queue_depth(broker, student, "keep") == 1
    assert queue_depth(broker, student, "lose") is None
    out = cli.run("receive", "keep", "--count", "1")
    assert out.stdout.splitlines() == [" [x] Received 'stays'"]


def test_a_missed_heartbeat_is_a_stream_lost_error(broker, student, cli):
    cli.run("send", "slow", "abcdefgh")
    out = cli.run(
        "lab-worker", "slow", "--acknowledge", "--delay-per-char", "1", "--heartbeat", "1",
        "--count", "1", "--timeout", "30",
    )  # fmt: skip
    assert out.returncode == 3, out.stdout + out.stderr
    assert "StreamLostError" in out.stderr and "--heartbeat" in out.stderr
    assert queue_depth(broker, student, "slow") == 1  # never acked: back in the queue
    out = cli.run(
        "lab-worker", "slow", "--acknowledge", "--delay-per-char", "1", "--heartbeat", "0",
        "--count", "1", "--timeout", "30",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr  # no heartbeat: nothing to miss
    assert " [x] Done 'abcdefgh'" in out.stdout


def test_queue_list_shows_every_queue_of_the_vhost(broker, student, cli):
    cli.run("send", "known", "a")
    conn = broker.connect(student)  # queues pimq never declared
    ch = conn.channel()
    ch.queue_declare("made.elsewhere", durable=True)
    ch.confirm_delivery()
    for _ in range(2):
        ch.basic_publish("", "made.elsewhere", b"x")
    ch.queue_declare("theirs.exclusive", exclusive=True)
    out = cli.run("queue", "list")
    conn.close()
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[1:]}
    assert rows["known"] == ["1", "0", "durable"]
    assert rows["made.elsewhere"] == ["2", "0", "durable"]
    assert rows["theirs.exclusive"][2] == "transient,exclusive"
    assert "pimq.tasks" not in rows  # nothing declared it in this vhost yet


def test_queue_list_without_the_management_api(broker, student, cli, tmp_path):
    cfg = tmp_path / "nomgmt.yaml"
    cfg.write_text(
        f"host: 127.0.0.1\nport: {broker.port}\nvhost: {student.vhost}\n"
        f'user: {student.user}\npassword: "{student.password}"\nmanagement_port: 1\n'
    )
    cfg.chmod(0o600)
    cli.run("send", "known2", "a")
    out = cli.run("queue", "list", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "management API unavailable" in out.stderr
    assert any(line.split()[:3] == ["known2", "1", "0"] for line in out.stdout.splitlines())
