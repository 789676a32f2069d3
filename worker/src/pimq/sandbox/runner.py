"""The program inside ``pimq-sandbox@.service``: one student's module, one job.

Standalone (standard library only, run as ``python3 -I runner.py``): the
worker never imports it, and it cannot import pimq. fd 0 is the connection
the worker opened (``Accept=yes``, ``StandardInput=socket``); the frames are
:mod:`pimq.sandbox.frames`'. It compiles the module the worker streams in,
then runs ``run(body, params)`` for each shard and sends the result back as
JSON (at most 16 MiB) or the student's traceback.

Limits it names itself (systemd enforces them too, without naming them):
``--memory-mb`` is the ``RLIMIT_AS`` (``LimitAS=`` in the unit), so that an
allocation beyond it raises ``MemoryError`` here ("memory limit 256 MiB
exceeded") before the cgroup's ``MemoryMax=`` kills the process; ``--tasks``
is only quoted when ``fork`` fails (``TasksMax=``). A watchdog thread ends
the process the moment the worker closes the connection (job over,
cancelled, or shard past its time limit): systemd then kills whatever the
student left running in the unit.
"""

import argparse
import json
import linecache
import os
import resource
import select
import socket
import struct
import sys
import threading
import time
import traceback
import types

HEADER = struct.Struct(">I")
MAX_RESULT = 16 * 1024 * 1024
MAX_FRAME = 256 * 1024 * 1024


class Closed(Exception):
    pass


def write_frame(sock, payload):
    head = HEADER.pack(len(payload))
    if len(payload) < 65536:
        sock.sendall(head + payload)
    else:
        sock.sendall(head)
        sock.sendall(payload)


def _read_exact(sock, n):
    view = bytearray(n)
    got = 0
    while got < n:
        k = sock.recv_into(memoryview(view)[got:], n - got)
        if k == 0:
            raise Closed("connection closed")
        got += k
    return bytes(view)


def read_frame(sock, limit=MAX_FRAME):
    (n,) = HEADER.unpack(_read_exact(sock, HEADER.size))
    if n > limit:
        raise Closed("frame too large")
    return _read_exact(sock, n) if n else b""


def write_json(sock, doc):
    write_frame(sock, json.dumps(doc, separators=(",", ":")).encode())


def mib(n):
    return f"{n / (1024 * 1024):.1f} MiB"


def watchdog(sock):
    """Exit as soon as the worker hangs up, even while ``run()`` computes."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP)
    while True:
        for _fd, _ev in poller.poll():
            os._exit(0)


def student_error(exc, filename, limits):
    """(one line naming the student's file and line, the student's traceback)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
    if isinstance(exc, MemoryError):
        text = f"memory limit {limits.memory_mb} MiB exceeded (MemoryError)"
    elif isinstance(exc, BlockingIOError):
        text += f" (task limit {limits.tasks} processes and threads reached)"
    where = f"{filename}, line {frames[-1].lineno}, in {frames[-1].name}: " if frames else ""
    tb = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    return where + text, tb + text + "\n"


def serve(sock, limits):
    write_json(sock, {"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    init = json.loads(read_frame(sock, MAX_RESULT))
    filename = init.get("filename") or "module.py"
    params = init.get("params") or {}
    module = types.ModuleType("student_module")
    module.__file__ = filename
    sys.modules["student_module"] = module
    threading.Thread(target=watchdog, args=(sock,), daemon=True).start()
    lines = init["code"].splitlines(keepends=True)
    linecache.cache[filename] = (len(init["code"]), None, lines, filename)  # source in tracebacks
    try:
        exec(compile(init["code"], filename, "exec"), module.__dict__)
        run = module.run
    except BaseException as exc:
        error, tb = student_error(exc, filename, limits)
        write_json(sock, {"ok": False, "error": error, "traceback": tb})
        return
    write_json(sock, {"ok": True})
    while True:
        try:
            read_frame(sock, MAX_RESULT)  # {"index": i}
            body = read_frame(sock)
        except Closed:
            return
        start = time.perf_counter()
        try:
            value = run(body, params)
            seconds = time.perf_counter() - start
            try:
                text = json.dumps(value, separators=(",", ":")).encode()
            except (TypeError, ValueError) as exc:
                raise ResultError(f"run() returned a result that is not JSON: {exc}") from None
            if len(text) > MAX_RESULT:
                raise ResultError(
                    f"run() returned a result of {mib(len(text))}, over the limit of "
                    f"{mib(MAX_RESULT)}"
                )
        except ResultError as exc:
            write_json(sock, {"ok": False, "error": str(exc), "traceback": str(exc) + "\n"})
            continue
        except BaseException as exc:
            error, tb = student_error(exc, filename, limits)
            write_json(sock, {"ok": False, "error": error, "traceback": tb})
            continue
        write_json(sock, {"ok": True, "seconds": seconds})
        write_frame(sock, text)


class ResultError(Exception):
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=0)
    limits = parser.parse_args()
    if limits.memory_mb:  # the unit sets LimitAS= (setrlimit is filtered there)
        size = limits.memory_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > size:
            try:
                resource.setrlimit(resource.RLIMIT_AS, (size, hard))
            except (OSError, ValueError):
                pass
    sock = socket.socket(fileno=0)
    os.dup2(2, 1)  # print() in student code goes to the journal, not the protocol
    try:
        serve(sock, limits)
    except Closed:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
