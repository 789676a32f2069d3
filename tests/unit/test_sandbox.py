"""The sandbox protocol over a real Unix socket with the real runner
(``support.sandbox.Activator`` stands in for systemd's ``Accept=yes``), the
per-student code store, and the head's checks of a student module."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support.sandbox import Activator

from pimq.client.module import load_module
from pimq.errors import UsageError
from pimq.protocol.wire import code_digest
from pimq.sandbox import frames, runner
from pimq.sandbox.client import Sandbox, SandboxError
from pimq.worker import execute
from pimq.worker.store import CodeStore, StoreError

GOOD = """\
def split(a, p, n):
    return [b"a b"]

def run(body, params):
    import os
    return {"words": len(body.split()), "pid": os.getpid(), "k": params.get("k")}

def join(r, p):
    return r
"""


@pytest.fixture
def activator(tmp_path: Path):
    act = Activator(tmp_path / "sandbox.sock", "--memory-mb", "300", "--tasks", "16")
    yield act
    act.close()


def open_sandbox(act: Activator, code: str, filename: str = "mine.py") -> Sandbox:
    return Sandbox(act.path, "alice", "ab" * 8, filename, code, '{"k": 7}')


def test_a_warm_sandbox_runs_many_shards_in_one_process(activator):
    box = open_sandbox(activator, GOOD)
    seen = []
    for i in range(20):
        _seconds, text = box.run(i, b"one two three " * i)
        seen.append(__import__("json").loads(text))
    assert [d["words"] for d in seen] == [3 * i for i in range(20)]
    assert {d["pid"] for d in seen} == {activator.procs[0].pid}
    assert seen[0]["k"] == 7  # the job's params reach run()
    box.close()


def test_a_raising_run_comes_back_as_the_students_traceback(activator):
    code = "def run(body, params):\n    x = 1\n    return x / len(body)\n"
    box = open_sandbox(activator, code)
    with pytest.raises(SandboxError) as err:
        box.run(3, b"")
    assert str(err.value) == "mine.py, line 3, in run: ZeroDivisionError: division by zero"
    assert 'File "mine.py", line 3, in run\n    return x / len(body)' in err.value.traceback
    assert "runner.py" not in err.value.traceback  # only the student's frames
    assert box.run(4, b"xy")[1] == b"0.5"  # the sandbox carries on


@pytest.mark.parametrize(
    ("ret", "message"),
    [
        ("{1, 2}", "run() returned a result that is not JSON: Object of type set"),
        (
            "'x' * (17 * 1024 * 1024)",
            "run() returned a result of 17.0 MiB, over the limit of 16.0 MiB",
        ),
    ],
)
def test_a_result_that_is_not_json_or_too_large_is_a_clear_error(activator, ret, message):
    box = open_sandbox(activator, f"def run(body, params):\n    return {ret}\n")
    with pytest.raises(SandboxError) as err:
        box.run(0, b"")
    assert str(err.value).startswith(message)


def test_an_import_that_fails_in_the_sandbox_names_the_line(activator):
    with pytest.raises(SandboxError) as err:
        open_sandbox(activator, "import os\nimport no_such_package_here\ndef run(b, p): pass\n")
    assert str(err.value) == (
        "importing the module failed: mine.py, line 2, in <module>: "
        "ModuleNotFoundError: No module named 'no_such_package_here'"
    )


def test_an_allocation_beyond_the_memory_limit_is_named(activator):
    box = open_sandbox(activator, "def run(body, params):\n    return len(bytearray(400 << 20))\n")
    with pytest.raises(SandboxError) as err:
        box.run(0, b"")
    assert str(err.value) == "mine.py, line 2, in run: memory limit 300 MiB exceeded (MemoryError)"


def test_the_sandbox_ends_when_the_worker_hangs_up_even_mid_shard(activator):
    box = open_sandbox(activator, "import time\ndef run(body, params):\n    time.sleep(60)\n")
    frames.write_json(box.sock, {"index": 0})
    frames.write_frame(box.sock, b"")
    time.sleep(0.3)
    assert len(activator.alive()) == 1
    box.close()
    deadline = time.monotonic() + 10
    while activator.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert activator.alive() == []


def test_the_runner_and_the_worker_speak_the_same_frames():
    a, b = socket.socketpair()
    payload = b"x" * 70000
    frames.write_frame(a, payload)
    assert runner.read_frame(b) == payload
    runner.write_json(b, {"ok": True})
    assert frames.read_json(a) == {"ok": True}
    frames.write_frame(a, b"abc")
    assert runner.read_frame(b) == b"abc"
    a.close()
    with pytest.raises(runner.Closed):
        runner.read_frame(b)


def test_execute_module_reads_the_store_and_keeps_one_sandbox_per_job(activator, tmp_path):
    store = CodeStore(tmp_path / "store")
    digest = code_digest(GOOD.encode())
    store.put("alice", digest, GOOD.encode())
    task = (str(store.root), activator.path, "alice", "cd" * 8, digest, "wc.py")
    outcomes = [execute.execute("module", b"a b c", "{}", i, task) for i in range(3)]
    assert all(ok for ok, _s, _e, _tb in outcomes)
    assert b'"index":2,"ok":true' in outcomes[2][2] and b'"words":3' in outcomes[2][2]
    assert len(activator.procs) == 1
    execute.end_sandboxes("alice", "cd" * 8)
    deadline = time.monotonic() + 10
    while activator.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert activator.alive() == []


def test_the_store_is_content_addressed_and_per_student(tmp_path):
    store = CodeStore(tmp_path)
    source = b"def run(b, p): return 1\n"
    digest = code_digest(source)
    path = store.put("alice", digest, source)
    assert path == tmp_path / "alice" / "code" / f"{digest}.py"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert store.has("alice", digest) and not store.has("bob", digest)
    assert store.get("alice", digest) == source.decode()
    with pytest.raises(StoreError, match="does not match its digest"):
        store.put("alice", digest, source + b"#")
    for bad in ("..", "a/b", ""):
        with pytest.raises(StoreError, match="not a student name"):
            store.path(bad, digest)
    with pytest.raises(StoreError, match="not a SHA-256"):
        store.path("alice", "../../etc/passwd")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def split(a, p, n):\n    return [\n", "line 2: SyntaxError: '[' was never closed"),
        ("def split(a, p, n): pass\ndef join(r, p): pass\n", "line 1: the module defines no run()"),
        ("x = 1\nimport no_such_package_here\n", "line 2: ModuleNotFoundError: No module named"),
        ("def run(b, p): pass\n1 / 0\n", "line 2: ZeroDivisionError: division by zero"),
    ],
)
def test_the_head_refuses_a_broken_module_naming_file_and_line(tmp_path, code, message):
    path = tmp_path / "mod.py"
    path.write_text(code)
    with pytest.raises(UsageError) as err:
        load_module(str(path))
    assert str(err.value).startswith(f"{path}, {message}")
    assert "\n" not in str(err.value)


def test_the_head_loads_a_good_module_with_its_digest(tmp_path):
    path = tmp_path / "good.py"
    path.write_text(GOOD)
    student = load_module(str(path))
    assert student.digest == code_digest(GOOD.encode())
    assert student.module.run(b"a b", {})["words"] == 2
