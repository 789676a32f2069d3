"""Celery as a peer for the word count: a ``group`` of one task per shard.

The broker is the bench's RabbitMQ (``BENCH_CELERY_URL``), results come back
over AMQP (``rpc://``). Worker (start it with the same number of processes as
pimq has)::

    celery -A celery_wordcount worker --concurrency K --pool prefork

Client: ``python celery_wordcount.py FILE WORD SHARDS`` splits the file with
pimq's own splitter (byte ranges cut on whitespace), sends each shard as text
(Celery's default JSON serializer) and sums the group's results. The task runs
pimq's own per-shard function, so both runtimes do exactly the same work and
count with grep's word semantics. Prints one JSON line: count and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from celery import Celery, group

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_URL", "amqp://"), backend="rpc://")
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name="bench.count_word")
def count_word(text: str, word: str) -> int:
    from pimq.jobs.wordcount import count_word as pimq_count_word

    return pimq_count_word(text.encode("utf-8"), word)


def run(path: str, word: str, shards: int) -> int:
    from pimq.split import split_bytes

    with open(path, "rb") as f:
        data = f.read()
    pieces = [p.decode("utf-8") for p in split_bytes(data, shards)]
    result = group(count_word.s(p, word) for p in pieces).apply_async()
    return sum(result.get(timeout=300))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("word")
    parser.add_argument("shards", type=int)
    args = parser.parse_args()
    start = time.perf_counter()
    count = run(args.file, args.word, args.shards)
    print(json.dumps({"result": count, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
