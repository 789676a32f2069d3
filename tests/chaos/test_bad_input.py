"""1000 malformed messages into a student's pimq.tasks: all end in pimq.dead with a reason,
no worker restarts, and a real job right after is exact.

Published as heidi (her own credentials, from the credentials folder, in this process's
memory only) from the control machine to the head's broker at its IP:5671 (TLS, the room CA).
"""

from __future__ import annotations

import decimal
import json
import os
import random
import time

import figures
import pika
import pytest
from support import jobs, nodes

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

STUDENT = "heidi"
COUNT = 1000
REPLY = "pimq.result.chaosbad"


def good_headers(kind: str = "primes", params: str = "{}") -> dict:
    return {
        "pimq-job": "c0ffee" + os.urandom(4).hex(),
        "pimq-index": 0,
        "pimq-count": 1,
        "pimq-kind": kind,
        "pimq-params": params,
        "pimq-attempt": 0,
    }


def variant(i: int, rng: random.Random) -> tuple[str, bytes, dict | None, str | None]:
    """(category, body, headers, reply_to) of malformed message number i."""
    junk = rng.randbytes(rng.randint(0, 4096))
    h = good_headers()
    bad_regex = good_headers("grep", '{"pattern":"("}')
    cases = [
        ("random body, no headers", junk, None, None),
        ("random body, junk headers", junk, {"x": rng.randint(0, 9), "y": "z"}, REPLY),
        ("missing pimq-job", b"[0,10]", {k: v for k, v in h.items() if k != "pimq-job"}, REPLY),
        ("pimq-job an integer", b"[0,10]", {**h, "pimq-job": 12345678}, REPLY),
        ("pimq-job not hex", b"[0,10]", {**h, "pimq-job": "../../etc/passwd"}, REPLY),
        ("pimq-index a string", b"[0,10]", {**h, "pimq-index": "0"}, REPLY),
        ("pimq-index negative", b"[0,10]", {**h, "pimq-index": -1}, REPLY),
        ("pimq-index >= count", b"[0,10]", {**h, "pimq-index": 5, "pimq-count": 5}, REPLY),
        ("pimq-count a float", b"[0,10]", {**h, "pimq-count": decimal.Decimal("3.5")}, REPLY),
        ("pimq-attempt negative", b"[0,10]", {**h, "pimq-attempt": -3}, REPLY),
        ("pimq-params not JSON", b"[0,10]", {**h, "pimq-params": "{nope"}, REPLY),
        ("pimq-params a JSON list", b"[0,10]", {**h, "pimq-params": "[1,2]"}, REPLY),
        ("pimq-params oversized (60 KB)", b"[0,10]", {**h, "pimq-params": "x" * 60000}, REPLY),
        ("pimq-kind oversized (20 KB)", b"[0,10]", {**h, "pimq-kind": "a" * 20000}, REPLY),
        ("pimq-kind a list", b"[0,10]", {**h, "pimq-kind": ["primes"]}, REPLY),
        ("unknown job kind", b"[0,10]", {**h, "pimq-kind": "nosuchkind"}, REPLY),
        ("kind like a path", b"[0,10]", {**h, "pimq-kind": "../../tmp/evil"}, REPLY),
        ("reply_to missing", b"[0,10]", h, None),
        ("reply_to not pimq.result.*", b"[0,10]", h, "amq.gen-elsewhere"),
        ("primes body not JSON (raises)", junk or b"x", h, REPLY),
        ("primes body of strings (raises)", b'["a","b"]', h, REPLY),
        ("primes body too short (raises)", b"[1]", h, REPLY),
        ("grep bad regex in params (raises)", b"a\n", bad_regex, REPLY),
    ]  # fmt: skip
    return cases[i % len(cases)]


def connect(room: nodes.Room, password: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host=room.ips[room.head],
            port=nodes.AMQPS_PORT,
            ssl_options=nodes.amqps_options(room.ips[room.head]),
            virtual_host=STUDENT,
            credentials=pika.PlainCredentials(STUDENT, password),
            connection_attempts=3,
            retry_delay=2,
        )
    )


def depth(ch, queue: str) -> int:
    return ch.queue_declare(queue=queue, passive=True).method.message_count


def restarts(room: nodes.Room) -> dict[str, int]:
    return {
        node: int(jobs.worker_props(node, "NRestarts").get("NRestarts", "-1"))
        for node in room.workers
    }


def test_1000_malformed_messages_all_dead_lettered(
    room: nodes.Room, converged, creds, corpus
) -> None:
    path, expected = corpus
    for node in room.workers:
        jobs.wait_worker_active(node)
    before = restarts(room)
    rng = random.Random(5)
    conn = connect(room, creds.students[STUDENT])
    ch = conn.channel()
    ch.queue_purge("pimq.dead")
    ch.confirm_delivery()
    categories: dict[str, str] = {}
    start = time.monotonic()
    for i in range(COUNT):
        category, body, headers, reply_to = variant(i, rng)
        mid = f"chaos-bad-{i}"
        categories[mid] = category
        ch.basic_publish(
            exchange="",
            routing_key="pimq.tasks",
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=2, message_id=mid, headers=headers, reply_to=reply_to
            ),
        )

    def all_dead() -> bool:
        conn.process_data_events(0)
        return depth(ch, "pimq.dead") >= COUNT and depth(ch, "pimq.tasks") == 0

    try:
        nodes.wait_for(all_dead, timeout=600, interval=2, what=f"{COUNT} messages in pimq.dead")
    except AssertionError:
        pass  # counted below: the figures say how many made it
    seconds = time.monotonic() - start
    seen: dict[str, str] = {}
    while True:
        method, props, _ = ch.basic_get("pimq.dead", auto_ack=True)
        if method is None:
            break
        reason = (props.headers or {}).get("pimq-reason")
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        seen[props.message_id] = reason or ""
    left_in_tasks = depth(ch, "pimq.tasks")
    conn.close()
    after = restarts(room)

    job = jobs.wordcount(room, STUDENT, path, "more").wait()
    with_reason = sum(1 for mid in categories if seen.get(mid))
    missing = sorted({categories[m] for m in categories if m not in seen})
    no_reason = sorted({categories[m] for m in categories if m in seen and not seen[m]})
    figures.add(
        "Bad input: malformed messages into pimq.tasks",
        f"{COUNT} messages, {len(set(categories.values()))} kinds of defect",
        **{
            "in pimq.dead": sum(1 for m in categories if m in seen),
            "with a reason": with_reason,
            "left in pimq.tasks": left_in_tasks,
            "distinct reasons": len(set(seen.values())),
            "worker restarts": sum(after[n] - before[n] for n in room.workers),
            "s from first publish to all dead": round(seconds, 1),
            "real job after exact": bool(job.doc and job.doc["result"] == expected),
        },
    )
    print(json.dumps(sorted(set(seen.values())), indent=1))
    assert not missing, f"never reached pimq.dead: {missing}"
    assert not no_reason, f"dead-lettered without pimq-reason: {no_reason}"
    assert with_reason == COUNT
    assert left_in_tasks == 0
    assert after == before, f"worker restarts: before {before}, after {after}"
    assert job.rc == 0, job.err
    assert job.doc["result"] == expected
