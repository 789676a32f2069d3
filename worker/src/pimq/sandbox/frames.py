"""The sandbox protocol: length-prefixed frames over one Unix stream socket.

A frame is a 4-byte big-endian length and that many bytes. The runner (inside
the sandbox) and the worker's pool process (outside) exchange:

1. runner -> worker: ``{"ready": true, "pid": ..., "uid": ...}`` (JSON frame)
2. worker -> runner: ``{"student", "job", "filename", "code", "params"}``
   (JSON frame); runner -> worker: ``{"ok": true}`` or an error reply (the
   module failed to import on this Pi).
3. per shard, worker -> runner: ``{"index": i}`` (JSON frame), then the
   shard's bytes (raw frame); runner -> worker: ``{"ok": true, "seconds": s}``
   followed by the result as JSON text (raw frame), or an error reply
   ``{"ok": false, "error": "<one line>", "traceback": "<the student's>"}``.

:mod:`pimq.sandbox.runner` carries its own copy of :func:`read_frame` and
:func:`write_frame` (it runs under ``python3 -I`` without pimq installed
where it can read it); ``tests/unit/test_sandbox.py`` holds the two to the
same format.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

HEADER = struct.Struct(">I")
#: a result (or a shard) larger than this is refused
MAX_RESULT = 16 * 1024 * 1024
#: the largest frame either side accepts (shards can be larger than results)
MAX_FRAME = 256 * 1024 * 1024


class Closed(Exception):
    """The other side closed the connection (or sent a frame too large)."""


def write_frame(sock: socket.socket, payload: bytes) -> None:
    head = HEADER.pack(len(payload))
    if len(payload) < 65536:
        sock.sendall(head + payload)
    else:
        sock.sendall(head)
        sock.sendall(payload)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    view = bytearray(n)
    got = 0
    while got < n:
        k = sock.recv_into(memoryview(view)[got:], n - got)
        if k == 0:
            raise Closed("connection closed")
        got += k
    return bytes(view)


def read_frame(sock: socket.socket, limit: int = MAX_FRAME) -> bytes:
    (n,) = HEADER.unpack(_read_exact(sock, HEADER.size))
    if n > limit:
        raise Closed(f"frame of {n} bytes over the limit of {limit}")
    return _read_exact(sock, n) if n else b""


def write_json(sock: socket.socket, doc: Any) -> None:
    write_frame(sock, json.dumps(doc, separators=(",", ":")).encode())


def read_json(sock: socket.socket) -> dict[str, Any]:
    doc = json.loads(read_frame(sock, MAX_RESULT))
    if not isinstance(doc, dict):
        raise Closed("not a JSON object")
    return doc
