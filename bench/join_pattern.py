"""The classic join pattern of the RabbitMQ tutorials, as a peer for the word count.

``run FILE WORD N URL``: the producer reads the text in chunks of about 1 MiB
(cut on whitespace), turns each chunk into a word list (``re.findall(r"\\w+")``
over the decoded text: Unicode word characters), JSON-encodes it and publishes
it, persistent, round-robin into the durable queues ``join.words.0`` ..
``join.words.{N-1}``; then it consumes the join queue ``join.sums`` and sums
the per-chunk counts. Prints one JSON line: the count and the seconds.

``worker I WORD URL``: consumes ``join.words.I`` (prefetch 1, manual ack),
counts WORD in each list and publishes ``{"run", "chunk", "count"}`` to
``join.sums``. Run N of them.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import time
from typing import Any

import pika

CHUNK = 1 << 20
SUMS = "join.sums"
PERSISTENT = pika.BasicProperties(delivery_mode=2, content_type="application/json")


def words_queue(i: int) -> str:
    return f"join.words.{i}"


def chunks(text: str, size: int = CHUNK) -> list[str]:
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        while end < len(text) and not text[end].isspace():
            end += 1
        out.append(text[start:end])
        start = end
    return out


def worker(index: int, word: str, url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    queue = words_queue(index)
    ch.queue_declare(queue, durable=True)
    ch.queue_declare(SUMS, durable=True)
    ch.basic_qos(prefetch_count=1)

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        words = json.loads(body)
        headers = props.headers or {}
        reply = {
            "run": headers.get("run"),
            "chunk": headers.get("chunk"),
            "count": words.count(word),
        }
        ch.basic_publish("", SUMS, json.dumps(reply).encode(), PERSISTENT)
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    print(f"join worker {index} consuming {queue}", flush=True)
    try:
        ch.start_consuming()
    except KeyboardInterrupt:
        pass


def run(path: str, word: str, n: int, url: str) -> tuple[int, int]:
    run_id = secrets.token_hex(4)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(SUMS, durable=True)
    for i in range(n):
        ch.queue_declare(words_queue(i), durable=True)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    pieces = chunks(text)
    finder = re.compile(r"\w+")
    for k, piece in enumerate(pieces):
        body = json.dumps(finder.findall(piece)).encode()
        props = pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            headers={"run": run_id, "chunk": k},
        )
        ch.basic_publish("", words_queue(k % n), body, props)
    total, seen = 0, set()
    for method, _props, body in ch.consume(SUMS, inactivity_timeout=120):
        if method is None:
            raise SystemExit(f"join: no sums for 120 s ({len(seen)} of {len(pieces)} chunks)")
        ch.basic_ack(method.delivery_tag)
        reply = json.loads(body)
        if reply.get("run") != run_id or reply["chunk"] in seen:
            continue
        seen.add(reply["chunk"])
        total += reply["count"]
        if len(seen) == len(pieces):
            break
    ch.cancel()
    conn.close()
    return total, len(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    r = sub.add_parser("run")
    r.add_argument("file")
    r.add_argument("word")
    r.add_argument("n", type=int)
    r.add_argument("url")
    w = sub.add_parser("worker")
    w.add_argument("index", type=int)
    w.add_argument("word")
    w.add_argument("url")
    args = parser.parse_args()
    if args.role == "worker":
        worker(args.index, args.word, args.url)
        return
    start = time.perf_counter()
    count, messages = run(args.file, args.word, args.n, args.url)
    seconds = time.perf_counter() - start
    print(json.dumps({"result": count, "seconds": seconds, "messages": messages}))


if __name__ == "__main__":
    main()
