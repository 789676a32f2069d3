"""The official RabbitMQ Python tutorials 1-6 (docs/lab/tutorials/), as a student runs them.

Each script is the tutorial as published except its connection parameters
(``pimq.parameters()`` instead of ``pika.ConnectionParameters('localhost')``)
and its non-exclusive queues declared durable (RabbitMQ 4 deprecates transient ones);
this suite runs with the newest pika and with Debian's pika 1.2, which lacks
``pika.DeliveryMode`` (tutorial 2) unless pimq backports it.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.helpers import queue_depth

TUTORIALS = Path(__file__).resolve().parents[2] / "docs" / "lab" / "tutorials"


class Script:
    """A tutorial script running in the background; its stdout line by line."""

    def __init__(self, env: dict[str, str], name: str, *args: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(TUTORIALS / name), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, line: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.seen:
            left = deadline - time.monotonic()
            try:
                self.seen.append(self.lines.get(timeout=max(left, 0.01)))
            except queue.Empty:
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""
                raise AssertionError(f"{self.name}: no {line!r}; saw {self.seen}\n{err}") from None

    def interrupt(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)  # to the end of its output
        err = self.proc.stderr.read()
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return err


def run(env: dict[str, str], name: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(TUTORIALS / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture
def stop():
    running: list[Script] = []
    yield running.append
    for script in running:
        if script.proc.poll() is None:
            script.proc.kill()
            script.proc.wait()


def test_1_hello_world(broker, student, cli, stop):
    receiver = Script(cli.env, "receive.py")
    stop(receiver)
    receiver.expect(" [*] Waiting for messages. To exit press CTRL+C")
    assert run(cli.env, "send.py") == [" [x] Sent 'Hello World!'"]
    receiver.expect(" [x] Received b'Hello World!'")
    receiver.interrupt()
    assert receiver.proc.returncode == 0 and receiver.seen[-1] == "Interrupted"


def test_2_work_queues(broker, student, cli, stop):
    # published before any worker runs: persistent messages on a durable queue
    tasks = ["First message.", "Second message..", "Third message...", "Fourth.", "Fifth."]
    for task in tasks:
        assert run(cli.env, "new_task.py", *task.split()) == [f" [x] Sent {task}"]
    assert queue_depth(broker, student, "task_queue") == len(tasks)
    workers = [Script(cli.env, "worker.py") for _ in range(2)]
    for w in workers:
        stop(w)
    deadline = time.monotonic() + 60
    while queue_depth(broker, student, "task_queue") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3.5)  # the last task takes up to 3 s
    for w in workers:
        w.interrupt()
    got = [line for w in workers for line in w.seen if line.startswith(" [x] Received ")]
    assert sorted(got) == sorted(f" [x] Received {t}" for t in tasks)
    assert all(any("Received" in line for line in w.seen) for w in workers)  # fair dispatch
    assert sum(line == " [x] Done" for w in workers for line in w.seen) == len(tasks)
    # acked, and durable: the queue is there and empty
    assert queue_depth(broker, student, "task_queue") == 0


def test_3_publish_subscribe(broker, student, cli, stop):
    receivers = [Script(cli.env, "receive_logs.py") for _ in range(2)]
    for r in receivers:
        stop(r)
        r.expect(" [*] Waiting for logs. To exit press CTRL+C")
    assert run(cli.env, "emit_log.py") == [" [x] Sent info: Hello World!"]
    for r in receivers:
        r.expect(" [x] b'info: Hello World!'")


def test_4_routing(broker, student, cli, stop):
    errors = Script(cli.env, "receive_logs_direct.py", "error")
    every = Script(cli.env, "receive_logs_direct.py", "info", "warning", "error")
    for r in (errors, every):
        stop(r)
        r.expect(" [*] Waiting for logs. To exit press CTRL+C")
    assert run(cli.env, "emit_log_direct.py", "info", "all", "fine") == [" [x] Sent info:all fine"]
    assert run(cli.env, "emit_log_direct.py", "error", "Run.", "Run.") == [
        " [x] Sent error:Run. Run."
    ]
    every.expect(" [x] info:b'all fine'")
    every.expect(" [x] error:b'Run. Run.'")
    errors.expect(" [x] error:b'Run. Run.'")
    errors.interrupt()
    assert " [x] info:b'all fine'" not in errors.seen


def test_5_topics(broker, student, cli, stop):
    kern = Script(cli.env, "receive_logs_topic.py", "kern.*")
    crit = Script(cli.env, "receive_logs_topic.py", "*.critical")
    for r in (kern, crit):
        stop(r)
        r.expect(" [*] Waiting for logs. To exit press CTRL+C")
    run(cli.env, "emit_log_topic.py", "kern.critical", "A critical kernel error")
    run(cli.env, "emit_log_topic.py", "kern.info", "booted")
    run(cli.env, "emit_log_topic.py", "app.critical", "disk full")
    kern.expect(" [x] kern.critical:b'A critical kernel error'")
    kern.expect(" [x] kern.info:b'booted'")
    crit.expect(" [x] kern.critical:b'A critical kernel error'")
    crit.expect(" [x] app.critical:b'disk full'")
    kern.interrupt()
    crit.interrupt()
    assert not any("disk full" in line for line in kern.seen)
    assert not any("booted" in line for line in crit.seen)


def test_6_rpc(broker, student, cli, stop):
    server = Script(cli.env, "rpc_server.py")
    stop(server)
    server.expect(" [x] Awaiting RPC requests")
    assert run(cli.env, "rpc_client.py") == [" [x] Requesting fib(30)", " [.] Got 832040"]
    server.expect(" [.] fib(30)")


def test_the_tutorials_differ_from_the_published_ones_only_in_their_connection():
    for script in sorted(TUTORIALS.glob("*.py")):
        text = script.read_text()
        assert "pika.ConnectionParameters" not in text and "localhost" not in text, script
        assert "pimq.parameters()" in text and "password" not in text, script
