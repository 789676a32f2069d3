"""The worker's side of a sandbox: one connection to ``pimq-sandbox.socket`` per
(student, job) and pool process, kept warm for the job's shards.

Runs in a pool process (:mod:`pimq.worker.execute`), never on the I/O thread.
Connecting makes systemd start a fresh ``pimq-sandbox@.service`` instance
(a dynamic uid, no network, its own limits); closing the connection ends it.
"""

from __future__ import annotations

import json
import socket
import time

from pimq.sandbox.frames import MAX_RESULT, Closed, read_frame, read_json, write_frame, write_json

DEFAULT_SOCKET = "/run/pimq-sandbox/sandbox.sock"


class SandboxError(Exception):
    """The shard failed: ``str(exc)`` is one line, :attr:`traceback` the student's
    traceback (empty when the sandbox itself failed)."""

    def __init__(self, line: str, traceback: str = "") -> None:
        super().__init__(line)
        self.traceback = traceback or line + "\n"


class Sandbox:
    def __init__(
        self, path: str, student: str, job: str, filename: str, code: str, params_json: str
    ) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
            hello = read_json(self.sock)
            if not hello.get("ready"):
                raise SandboxError("the sandbox did not start")
            init = {
                "student": student,
                "job": job,
                "filename": filename,
                "code": code,
                "params": json.loads(params_json),
            }
            write_json(self.sock, init)
            reply = read_json(self.sock)
        except OSError as exc:
            self.close()
            raise SandboxError(f"cannot start a sandbox ({path}): {exc.strerror or exc}") from None
        except (Closed, ValueError) as exc:
            self.close()
            raise SandboxError(f"the sandbox ended while starting: {exc}") from None
        if not reply.get("ok"):
            self.close()
            raise SandboxError(
                f"importing the module failed: {reply.get('error')}", str(reply.get("traceback"))
            )

    def run(self, index: int, body: bytes) -> tuple[float, bytes]:
        """(seconds, the result as JSON text) of shard ``index``; raise
        :class:`SandboxError`."""
        start = time.perf_counter()
        try:
            write_json(self.sock, {"index": index})
            write_frame(self.sock, body)
            reply = read_json(self.sock)
            if not reply.get("ok"):
                raise SandboxError(str(reply.get("error")), str(reply.get("traceback") or ""))
            text = read_frame(self.sock, MAX_RESULT)
        except (OSError, Closed) as exc:
            self.close()
            raise SandboxError(
                f"the sandbox ended while running shard {index} "
                f"({exc}; killed at its memory or task limit?)"
            ) from None
        try:
            json.loads(text)  # the sandbox is not trusted to send JSON
        except ValueError:
            self.close()
            raise SandboxError("the sandbox sent a result that is not JSON") from None
        return float(reply.get("seconds") or time.perf_counter() - start), text

    @property
    def closed(self) -> bool:
        return self.sock.fileno() == -1

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
