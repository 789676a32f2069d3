"""The room's queue caps on a real RabbitMQ: the admin-owned policies as
pimq_students converges them (the real pimq_rabbitmq module, run by
ansible-playbook against the private broker's management API), what they
refuse, and that a refusal is back-pressure: a job larger than the cap still
completes exact, a lab message waits for room or stops with a clear message."""

from __future__ import annotations

import pytest
from support.caps import api, confirmed_channel, converge, fill, policies
from support.helpers import grep_count, run_json

CAPS = {"queue_bytes": 4096, "queue_length": 100, "data_bytes": 16384, "data_length": 1000}


def test_policies_converge_idempotently_and_students_cannot_lift_them(broker, student, tmp_path):
    v = student.vhost
    assert converge(broker, tmp_path, v, CAPS, check=True) == [
        f"vhost {v}: policy pimq-caps set",
        f"vhost {v}: policy pimq-caps-data set",
    ]
    assert policies(broker, v) == {}  # --check changed nothing
    assert len(converge(broker, tmp_path, v, CAPS)) == 2
    assert converge(broker, tmp_path, v, CAPS) == []  # a second run changes nothing
    have = policies(broker, v)
    assert have["pimq-caps"]["pattern"] == ".*"
    assert have["pimq-caps"]["apply-to"] == "queues"
    assert have["pimq-caps-data"]["priority"] == have["pimq-caps"]["priority"] + 1
    changed = converge(broker, tmp_path, v, {**CAPS, "queue_bytes": 8192})
    assert changed == [f"vhost {v}: policy pimq-caps updated (definition)"]
    converge(broker, tmp_path, v, CAPS)

    # The student (tagged management, as the playbooks tag them) cannot touch them.
    for method, body in (("PUT", {"pattern": ".*", "definition": {}}), ("DELETE", None)):
        code = api(
            broker, method, f"/api/policies/{v}/pimq-caps", student.user, student.password, body
        )
        assert code in (401, 403), (method, code)
    assert set(policies(broker, v)) == {"pimq-caps", "pimq-caps-data"}

    conn, ch = confirmed_channel(broker, student)
    try:
        # a queue argument asking for more does not lift the cap (the lower one wins)
        ch.queue_declare("mine", durable=True, arguments={"x-max-length-bytes": 10**9})
        assert fill(ch, "mine", 1000) == 4000  # 4 x 1000 <= 4096 < 5 x 1000
        # pimq.tasks has the data cap
        ch.queue_declare("pimq.tasks", durable=True)
        assert fill(ch, "pimq.tasks", 1000) == 16000
        # and the length cap holds for empty bodies, which no byte cap counts
        ch.queue_declare("empty", durable=True)
        assert fill(ch, "empty", 0) == 0
        assert ch.queue_declare("empty", passive=True).method.message_count == 100
    finally:
        conn.close()


@pytest.mark.timeout(300)
def test_a_job_far_larger_than_the_cap_completes_exact(
    broker, student, cli, start_worker, shakespeare, tmp_path
):
    v = student.vhost
    converge(broker, tmp_path, v, CAPS)  # pimq.tasks holds 16 KiB of shards
    start_worker([v], processes=2)
    size = shakespeare.stat().st_size
    assert size > 40 * CAPS["data_bytes"]
    doc = run_json(cli, "wordcount", "--word", "more", str(shakespeare), "--shards", "200")
    assert doc["result"] == grep_count(shakespeare, "more")
    assert doc["shards"] == 200 and sum(doc["workers"].values()) == 200
    assert doc["refused"] > 0  # the cap refused shards, and none was lost


def test_a_shard_larger_than_the_cap_stops_with_a_clear_message(
    broker, student, cli, start_worker, tmp_path
):
    converge(broker, tmp_path, student.vhost, CAPS)
    start_worker([student.vhost])
    path = tmp_path / "big.txt"
    path.write_bytes(b"more " * 8000)  # 40000 bytes in one shard > 16384
    out = cli.run(
        "run", "wordcount", "--word", "more", str(path), "--shards", "1", "--queue-wait", "3"
    )
    assert out.returncode == 4, out.stderr
    assert "refused shards of job" in out.stderr
    assert "1 of 1 shard(s) not queued: 0" in out.stderr
    assert "largest refused shard has 40000 bytes" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_lab_message_waits_for_room_or_stops_clearly(broker, student, cli, tmp_path):
    converge(broker, tmp_path, student.vhost, CAPS)
    conn, ch = confirmed_channel(broker, student)
    try:
        ch.queue_declare("hello", durable=True)
        fill(ch, "hello", 1000)
    finally:
        conn.close()
    out = cli.run("send", "hello", "x" * 500, "--queue-wait", "2")
    assert out.returncode == 4, out.stdout + out.stderr
    assert "refused a message to queue hello for 2 s" in out.stderr
    assert "[x] Sent" not in out.stdout
    # with a receiver freeing room while it waits, the send goes through
    sender = cli.start("send", "hello", "y" * 500, "--queue-wait", "60")
    first = sender.stderr.readline()  # it was refused and waits
    assert "the broker refused a message to queue hello" in first
    assert sender.poll() is None
    got = cli.run("receive", "hello", "--count", "1")
    assert got.returncode == 0, got.stderr
    out, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, first + err
    assert "[x] Sent" in out
    conn = broker.connect(student)
    try:
        depth = conn.channel().queue_declare("hello", passive=True).method.message_count
    finally:
        conn.close()
    assert depth == 4  # 4 filled, 1 received, the waiting one in
