"""Every student owns their vhost and nothing else; guest is gone; pimq-worker is
fenced to ^pimq\\. resources."""

from __future__ import annotations

import itertools

import nodes
import pika
import pytest

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1800)]

ROSTER = ("alice", "bob", "carol")  # the harness roster (tests/harness/classroom.py)


@pytest.mark.parametrize("a,b", list(itertools.permutations(ROSTER, 2)), ids=lambda v: v)
def test_student_owns_own_vhost_and_is_refused_on_another(student, room, a, b):
    assert {a, b} <= set(room.students), room.students
    mine = student(a).try_vhost()
    assert mine == {"vhost": a, "connect": "ok", "consumed": f"hello {a}"}
    other = student(a).try_vhost(b)
    assert other["connect"] != "ok", f"{a} could open vhost {b}: {other}"


def connect(host: str, user: str, password: str, vhost: str = "/"):
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host=host,
            virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
            socket_timeout=5,
        )
    )


def test_guest_cannot_log_in_anywhere(converged, room):
    for node in room.nodes:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            connect(room.ips[node], "guest", "guest")
        assert "guest" not in {u["name"] for u in nodes.broker_definitions(node)["users"]}
    # Not even from localhost, where RabbitMQ would let guest in if it existed.
    probe = (
        "import pika,sys\ntry:\n pika.BlockingConnection(pika.ConnectionParameters('localhost',"
        "credentials=pika.PlainCredentials('guest','guest'),connection_attempts=1))\n"
        " print('IN')\nexcept pika.exceptions.AMQPConnectionError as e:\n print('REFUSED')\n"
    )
    assert nodes.on_node(room.head, ["python3", "-"], input=probe).stdout.strip() == "REFUSED"


def test_worker_user_only_reaches_pimq_resources(converged, room, creds):
    a = room.students[0]
    owner = connect(room.ips[room.head], a, creds.students[a], a)
    och = owner.channel()
    och.queue_declare(queue="homework", durable=False, auto_delete=False)
    och.basic_publish(exchange="", routing_key="homework", body=b"secret homework")
    try:
        worker = connect(room.ips[room.head], "pimq-worker", creds.worker, a)
        ch = worker.channel()
        ch.queue_declare(queue="pimq.tasks", durable=True, passive=True)  # allowed: ^pimq\.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.basic_get(queue="homework")
        assert refused.value.reply_code == 403
        ch = worker.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.queue_declare(queue="not-pimq", auto_delete=True)
        assert refused.value.reply_code == 403
        worker.close()
    finally:
        och.queue_delete(queue="homework")
        owner.close()


def test_every_broker_has_every_tenant(converged, room):
    for node in room.nodes:
        d = nodes.broker_definitions(node)
        vhosts = {v["name"] for v in d["vhosts"]}
        users = {u["name"]: u for u in d["users"]}
        perms = {
            (p["user"], p["vhost"]): (p["configure"], p["write"], p["read"])
            for p in d["permissions"]
        }
        limits = {
            p["vhost"]: p["value"] for p in d["parameters"] if p["component"] == "vhost-limits"
        }
        for s in room.students:
            assert s in vhosts and s in users, (node, s)
            assert [v for (u, v) in perms if u == s] == [s], (
                f"{s} has rights beyond its vhost on {node}"
            )
            assert perms[(s, s)] == (".*", ".*", ".*")
            assert perms[("pimq-worker", s)] == (r"^pimq\.",) * 3
            assert limits[s] == {"max-connections": 64, "max-queues": 64}
        assert "administrator" in users["pimq-admin"]["tags"]
