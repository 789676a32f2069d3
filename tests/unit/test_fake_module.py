"""A student module's job end to end on the in-process broker: the head
announces the module once, the worker keeps it in its store and runs every
shard in a warm sandbox (the real runner behind ``support.sandbox.Activator``);
a raising ``run()`` fails the job with the student's traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.fake_amqp import Room, make_room, start_worker
from support.sandbox import Activator

from pimq.client.controller import Controller
from pimq.config import StudentConfig
from pimq.errors import JobFailed
from pimq.protocol import topology
from pimq.protocol.wire import H_CODE, code_digest
from pimq.worker import execute

STUDENT = StudentConfig(vhost="s1", user="stud1", password="pw1", host="fake")
COUNT = "def run(body, params):\n    return len(body.split())\n"
BOOM = "def run(body, params):\n    words = body.split()\n    raise KeyError(words[0])\n"


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Room:
    return make_room(monkeypatch, tmp_path)


@pytest.fixture
def activator(tmp_path: Path):
    act = Activator(tmp_path / "sandbox.sock")
    yield act
    act.close()
    execute._sandboxes.clear()


def module_job(source: str, bodies: list[bytes]) -> Controller:
    digest = code_digest(source.encode())
    return Controller(
        STUDENT,
        "module",
        "{}",
        lambda _consumers: bodies,
        progress=False,
        headers={H_CODE: digest},
        code=(digest, "count.py", source),
    )


def wait_until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_a_module_job_runs_in_one_warm_sandbox_from_the_store(room, activator, tmp_path):
    worker = start_worker(
        room, ("s1",), store=str(tmp_path / "store"), sandbox_socket=activator.path
    )
    bodies = [b"w " * i for i in range(40)]
    outcome = module_job(COUNT, bodies).run()
    assert [outcome.results[i].value for i in range(40)] == list(range(40))
    assert worker.store.has("s1", code_digest(COUNT.encode()))
    assert len(activator.procs) == 1  # one sandbox for the job's 40 shards
    room.loop.run(lambda: not execute._sandboxes, seconds=5)  # "done" reaches the worker
    assert wait_until(lambda: not activator.alive())  # and the sandbox is gone
    assert room.broker.depth("s1", topology.TASKS) == 0


def test_a_raising_run_fails_the_job_with_the_students_traceback(room, activator, tmp_path):
    start_worker(room, ("s1",), store=str(tmp_path / "store"), sandbox_socket=activator.path)
    with pytest.raises(JobFailed) as err:
        module_job(BOOM, [b"alpha beta"]).run()
    text = str(err.value)
    first, *rest = text.splitlines()
    assert first.startswith("shard 0 of job ") and " failed on " in first
    assert "count.py, line 3, in run: KeyError: b'alpha'" in first
    assert '  File "count.py", line 3, in run' in rest
    assert room.broker.depth("s1", topology.TASKS) == 0
    assert room.broker.depth("s1", topology.DEAD) == 1


def test_a_shard_whose_module_never_comes_is_dead_lettered(room, activator, tmp_path):
    from support.fake_amqp import queue_shards

    from pimq.protocol.wire import H_CODE
    from pimq.worker.vhost import CODE_WAIT

    worker = start_worker(room, ("s1",), store=str(tmp_path / "store"))
    job = "ef" * 8
    queue = queue_shards(room, "s1", job, "module", [b"x"], {H_CODE: "0" * 64})
    link = worker.links[0]
    room.loop.run(lambda: bool(link.waiting))
    link.expire_waiting(time.monotonic() + CODE_WAIT / 2)  # (the worker's tick calls this)
    assert link.waiting
    link.expire_waiting(time.monotonic() + CODE_WAIT + 1)
    room.loop.run(lambda: room.broker.depth("s1", topology.DEAD) == 1)
    entry = room.broker.queue("s1", queue).messages[0].body
    assert b"module was not announced within 30 s" in entry
    assert room.broker.depth("s1", topology.TASKS) == 0
