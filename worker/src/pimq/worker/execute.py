"""What a pool process does with one shard. Runs off the broker thread."""

from __future__ import annotations

import json
import signal
import time
import traceback

from pimq import jobs
from pimq.protocol.wire import MODULE_KIND, json_result, shard_result
from pimq.sandbox.client import Sandbox, SandboxError
from pimq.worker.store import CodeStore, StoreError

#: (ok, seconds, the shard's result entry, traceback text)
ShardOutcome = tuple[bool, float, bytes, str]


def child_init() -> None:
    """Pool processes leave SIGTERM/SIGINT to the main process, which drains."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: where a student module's shard goes: (store root, sandbox socket, student,
#: job, module digest, file name)
ModuleTask = tuple[str, str, str, str, str, str]

#: this pool process's warm sandboxes, one per (student, job)
_sandboxes: dict[tuple[str, str], Sandbox] = {}
MAX_WARM = 4


def end_sandboxes(student: str, job: str) -> None:
    """The job is over: close its sandbox (systemd ends the unit and all in it)."""
    sandbox = _sandboxes.pop((student, job), None)
    if sandbox is not None:
        sandbox.close()


def _sandbox(params_json: str, task: ModuleTask) -> Sandbox:
    store, path, student, job, code, filename = task
    sandbox = _sandboxes.get((student, job))
    if sandbox is None:
        source = CodeStore(store).get(student, code)
        while len(_sandboxes) >= MAX_WARM:  # the oldest job's sandbox goes
            _sandboxes.pop(next(iter(_sandboxes))).close()
        sandbox = Sandbox(path, student, job, filename, source, params_json)
        _sandboxes[(student, job)] = sandbox
    return sandbox


def execute_module(body: bytes, params_json: str, index: int, task: ModuleTask) -> ShardOutcome:
    """A student module's shard, in its sandbox. The worker never imports the
    code: on failure the traceback is the student's (their file, their line)."""
    start = time.perf_counter()
    try:
        seconds, value_json = _sandbox(params_json, task).run(index, body)
    except SandboxError as exc:
        sandbox = _sandboxes.get((task[2], task[3]))
        if sandbox is not None and sandbox.closed:
            del _sandboxes[(task[2], task[3])]
        return False, time.perf_counter() - start, b"", exc.traceback.rstrip() + f"\n{exc}\n"
    except (OSError, StoreError) as exc:
        return False, time.perf_counter() - start, b"", f"module not in the store: {exc}\n"
    return True, seconds, json_result(index, seconds, value_json), ""


def read_range(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    if len(data) != end - start:
        raise OSError(f"{path} is shorter than the shard's range")
    return data


def execute(
    kind: str,
    body: bytes | tuple[str, int, int],
    params_json: str,
    index: int,
    module: ModuleTask | None = None,
) -> ShardOutcome:
    """Run one shard: (ok, seconds, its result entry, traceback text). The entry
    (:func:`pimq.protocol.wire.shard_result`) is encoded here, off the I/O thread.
    The traceback's last line is the one-line reason (:func:`pimq.worker.retry.last_line`)."""
    if isinstance(body, tuple):  # (path, start, end): a range of a dataset on this Pi
        try:
            body = read_range(*body)
        except OSError as exc:
            return False, 0.0, b"", f"OSError: cannot read the dataset: {exc.strerror or exc}\n"
    if kind == MODULE_KIND and module is not None:
        return execute_module(body, params_json, index, module)
    start = time.perf_counter()
    try:
        value = jobs.load(kind).run(body, json.loads(params_json))
        seconds = time.perf_counter() - start
        return True, seconds, shard_result(index, True, value, seconds), ""
    except Exception:
        return False, time.perf_counter() - start, b"", traceback.format_exc()
