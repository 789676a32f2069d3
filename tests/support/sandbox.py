"""What ``pimq-sandbox.socket`` does (``Accept=yes``), for tests without systemd:
listen on a Unix socket and start ``python3 -I`` :mod:`pimq.sandbox.runner`
per connection, the connection as its stdin and stdout. Only the launching is
stood in for; the runner and the protocol are the real ones. The OS limits
(DynamicUser, PrivateNetwork, MemoryMax, ...) are tested on the simulated
classroom, where systemd starts the real unit."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pimq.sandbox.runner

RUNNER = Path(pimq.sandbox.runner.__file__)


class Activator:
    def __init__(self, path: Path, *runner_args: str) -> None:
        self.path = str(path)
        self.args = runner_args
        self.procs: list[subprocess.Popen] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            proc = subprocess.Popen(
                [sys.executable, "-I", str(RUNNER), *self.args], stdin=conn, stdout=conn
            )
            conn.close()
            self.procs.append(proc)

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def close(self) -> None:
        self.server.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
