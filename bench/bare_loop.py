"""The floor for per-shard overhead: a bare pika loop with pimq's guarantees.

``run URL N``: one ``SelectConnection``; publishes N empty persistent messages
(header ``i`` = index, ``reply_to`` = its own durable reply queue) to the
durable queue ``bare.tasks`` with publisher confirms, all pipelined; consumes
the replies with manual acks, keeps one per index, stops at N. Timing covers
connect to last reply. Prints one JSON line.

``worker URL --prefetch P [--persistent-replies]``: consumes ``bare.tasks`` with
prefetch P, publishes an empty reply (transient like pimq's results, or
persistent) with a publisher confirm, and acks the task when the
reply is confirmed (what the pimq worker promises), all on the I/O thread: no
process pool, no parsing, no job code.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import time
from collections import deque
from typing import Any

import pika
from pika.spec import Basic

TASKS = "bare.tasks"
RESULT_LIKE = (
    b'{"job":"0123456789abcdef","index":1234,"ok":true,"seconds":1.2e-05,"worker":"vm",'
    b'"value":null}'
)


class Confirmed:
    """Map publisher-confirm frames (possibly ``multiple``) back to callbacks."""

    def __init__(self) -> None:
        self.seq = 0
        self.waiting: dict[int, Any] = {}
        self.order: deque[int] = deque()

    def add(self, callback: Any) -> None:
        self.seq += 1
        if callback is not None:
            self.waiting[self.seq] = callback
            self.order.append(self.seq)

    def on_frame(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, Basic.Ack)
        if method.multiple:
            while self.order and self.order[0] <= method.delivery_tag:
                callback = self.waiting.pop(self.order.popleft(), None)
                if callback is not None:
                    callback(ok)
        else:
            callback = self.waiting.pop(method.delivery_tag, None)
            if callback is not None:
                callback(ok)


def worker(url: str, prefetch: int, persistent: bool = False) -> None:
    confirms = Confirmed()

    def on_message(ch: Any, method: Any, p: Any, body: bytes) -> None:
        tag = method.delivery_tag
        headers = p.headers or {}
        reply = pika.BasicProperties(
            delivery_mode=2 if persistent else 1, headers={"i": headers.get("i")}
        )
        # a pimq-like task gets a pimq-sized result (its JSON result is ~100 bytes)
        ch.basic_publish("", p.reply_to, RESULT_LIKE if "pimq-job" in headers else b"", reply)
        confirms.add(lambda ok: ch.basic_ack(tag) if ok else ch.basic_nack(tag, requeue=True))

    def on_channel(ch: Any) -> None:
        ch.confirm_delivery(confirms.on_frame)
        ch.queue_declare(TASKS, durable=True)
        ch.basic_qos(prefetch_count=prefetch)
        ch.basic_consume(TASKS, on_message)
        print("bare worker consuming", flush=True)

    conn = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=lambda c: c.channel(on_open_callback=on_channel)
    )
    signal.signal(signal.SIGTERM, lambda *_: conn.ioloop.add_callback_threadsafe(conn.close))
    conn.add_on_close_callback(lambda *_: conn.ioloop.stop())
    conn.ioloop.start()


def pimq_like_props(i: int, count: int, reply_queue: str) -> pika.BasicProperties:
    """The same property set as a no-op pimq shard (``pimq.protocol.wire.shard_properties``:
    parameters ``{}`` and attempt 0 are left out), for comparison."""
    job = "0123456789abcdef"
    return pika.BasicProperties(
        delivery_mode=2,
        reply_to=reply_queue,
        headers={
            "pimq-job": job,
            "pimq-index": i,
            "pimq-count": count,
            "pimq-kind": "noop",
            "i": i,
        },
    )


def run(url: str, count: int, pimq_like: bool = False) -> float:
    reply_queue = f"bare.replies.{secrets.token_hex(4)}"
    confirms = Confirmed()
    seen: set[int] = set()
    start = time.perf_counter()
    done: dict[str, float] = {}

    def on_reply(ch: Any, method: Any, p: Any, body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        seen.add(p.headers["i"])
        if len(seen) == count and "t" not in done:
            done["t"] = time.perf_counter() - start
            ch.queue_delete(reply_queue, callback=lambda _f: conn.close())

    def publish_all(_frame: Any) -> None:
        ch = state["ch"]
        for i in range(count):
            props = (
                pimq_like_props(i, count, reply_queue)
                if pimq_like
                else pika.BasicProperties(delivery_mode=2, reply_to=reply_queue, headers={"i": i})
            )
            ch.basic_publish("", TASKS, b"", props)
            confirms.add(None)

    def on_channel(ch: Any) -> None:
        state["ch"] = ch
        ch.confirm_delivery(confirms.on_frame)
        ch.queue_declare(TASKS, durable=True)
        ch.queue_declare(reply_queue, durable=True)
        ch.basic_qos(prefetch_count=1000)
        ch.basic_consume(reply_queue, on_reply, callback=publish_all)

    state: dict[str, Any] = {}
    conn = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=lambda c: c.channel(on_open_callback=on_channel)
    )
    conn.add_on_close_callback(lambda *_: conn.ioloop.stop())
    conn.ioloop.start()
    if "t" not in done:
        raise SystemExit("bare loop: connection closed before the last reply")
    return done["t"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    r = sub.add_parser("run")
    r.add_argument("url")
    r.add_argument("count", type=int)
    r.add_argument(
        "--pimq-like", action="store_true", help="tasks carry pimq's shard properties and headers"
    )
    w = sub.add_parser("worker")
    w.add_argument("url")
    w.add_argument("--prefetch", type=int, default=2)
    w.add_argument("--persistent-replies", action="store_true")
    args = parser.parse_args()
    if args.role == "worker":
        worker(args.url, args.prefetch, args.persistent_replies)
        return
    seconds = run(args.url, args.count, args.pimq_like)
    print(json.dumps({"result": args.count, "seconds": seconds, "rate": args.count / seconds}))


if __name__ == "__main__":
    main()
