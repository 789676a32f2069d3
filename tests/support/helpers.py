"""Small helpers shared by the integration tests."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path

import pika

WORKER_USER = "pimq-worker"
WORKER_PASSWORD = "worker-" + secrets.token_hex(6)
ADMIN_USER = "pimq-admin"
ADMIN_PASSWORD = "admin-" + secrets.token_hex(6)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "data" / "tinyshakespeare.txt"


def grep_count(path: Path, word: str) -> int:
    out = subprocess.run(
        ["grep", "-ow", "--", word, str(path)], capture_output=True, env={"LC_ALL": "C.UTF-8"}
    )
    return out.stdout.count(b"\n")


def run_json(cli, *args: str, timeout: float = 120) -> dict:
    out = cli.run("run", *args, "--json", timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def job_id(stderr_text: str) -> str:
    match = re.search(r"job ([0-9a-f]{16})", stderr_text)
    assert match, stderr_text
    return match.group(1)


def shard_lines(log: str, job: str) -> list[str]:
    return [line for line in log.splitlines() if f"job {job} shard" in line and " s" in line]


def queue_depth(broker, student, queue: str) -> int | None:
    conn = broker.connect(student)
    try:
        ch = conn.channel()
        try:
            return ch.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return None
    finally:
        conn.close()


def drain(broker, student, queue: str) -> list[tuple[dict, bytes]]:
    """Take every message of a queue: (headers, body) pairs."""
    conn = broker.connect(student)
    got = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            got.append((props.headers or {}, body))
    finally:
        conn.close()


def wait_until(predicate, timeout: float = 30, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
