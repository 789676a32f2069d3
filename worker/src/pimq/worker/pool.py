"""A pool of forked shard processes driven from the pika IOLoop (no threads).

Each child owns one pipe. The I/O thread sends work only to an idle child (a
batch of shards: one for slow shards, several when many quick ones wait) and
watches every pipe with ``ioloop.add_handler``, so results come back on the
I/O thread itself: no executor threads, no locks, no GIL contention with the
broker I/O. A child that dies is replaced; its shards are reported failed.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from typing import Any

from pimq.worker.execute import ShardOutcome, child_init, end_sandboxes, execute

log = logging.getLogger(__name__)

READ = 0x0001  # pika's select_connection READ event
# Bodies this big cross the pipe as raw bytes after the pickled batch (no pickle
# copy of a multi-megabyte shard); smaller ones travel inside it.
RAW = 64 * 1024
#: how the reason of a shard ended for the broker's consumer_timeout begins
#: (it is dead-lettered at once: a retry would end the same way)
BROKER_DEADLINE = "the broker's consumer_timeout"


def _child_loop(conn: Connection) -> None:
    child_init()
    keep = conn.fileno()
    os.closerange(3, keep)  # sockets and other children's pipes inherited by fork
    os.closerange(keep + 1, 65536)
    while True:
        try:
            batch = conn.recv()
            if isinstance(batch, tuple):  # ("end", student, job): no reply
                end_sandboxes(batch[1], batch[2])
                continue
            tasks = [t if t[1] is not None else (t[0], conn.recv_bytes(), *t[2:]) for t in batch]
        except (EOFError, OSError):
            return
        conn.send([execute(*t) for t in tasks])


class Child:
    def __init__(self) -> None:
        parent, child = Pipe(duplex=True)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                parent.close()
                _child_loop(child)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child.close()
        self.pid = pid
        self.conn = parent
        self.token: Any = None
        self.deadline = float("inf")
        self.limit = 0.0
        self.reason = ""
        self.started = 0.0

    @property
    def fd(self) -> int:
        return self.conn.fileno()


class ShardPool:
    def __init__(
        self, size: int, ioloop: Any, on_results: Callable[[list[Any], list[ShardOutcome]], None]
    ) -> None:
        self.size = size
        self.ioloop = ioloop
        self.on_results = on_results
        self.children: dict[int, Child] = {}
        self.idle: list[Child] = []

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        child = Child()
        self.children[child.fd] = child
        self.idle.append(child)
        self.ioloop.add_handler(child.fd, self._on_readable, READ)

    @property
    def busy(self) -> int:
        return len(self.children) - len(self.idle)

    def has_idle(self) -> bool:
        return bool(self.idle)

    @property
    def idle_count(self) -> int:
        return len(self.idle)

    def submit(
        self,
        tokens: list[Any],
        tasks: list[tuple],
        limit: float = 0.0,
        cap: float = float("inf"),
        cap_reason: str = "",
    ) -> None:
        """Run ``tasks`` (``execute``'s arguments, the body second) one after the
        other in an idle child; ``on_results`` gets the tokens with their
        outcomes, in order, once all have run. ``limit``: seconds per task
        before :meth:`expire` ends the child (0: none); ``cap``: seconds for
        the whole batch, if sooner, ended with ``cap_reason``."""
        child = self.idle.pop()
        child.token = tokens
        child.limit = limit
        total = limit * len(tasks) if limit else float("inf")
        child.reason = f"time limit {limit:g} s exceeded"
        if cap < total:
            total, child.reason = max(cap, 0.0), cap_reason
        child.started = time.monotonic()
        child.deadline = child.started + total
        raw = [t[1] for t in tasks if len(t[1]) >= RAW]
        batch = [(t[0], None, *t[2:]) if len(t[1]) >= RAW else t for t in tasks]
        try:
            child.conn.send(batch)
            for body in raw:
                child.conn.send_bytes(body)
        except OSError:
            self._died(child)

    def _on_readable(self, fd: int, _events: int) -> None:
        child = self.children.get(fd)
        if child is None:
            return
        try:
            outcomes = child.conn.recv()
        except (EOFError, OSError):
            self._died(child)
            return
        tokens, child.token = child.token, None
        child.deadline = float("inf")
        self.idle.append(child)
        if tokens:
            self.on_results(tokens, outcomes)

    def _reap(self, child: Child, kill: bool) -> int:
        self.ioloop.remove_handler(child.fd)
        self.children.pop(child.fd, None)
        if child in self.idle:
            self.idle.remove(child)
        child.conn.close()
        if kill:
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _pid, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            return -1
        return os.waitstatus_to_exitcode(status)

    def _died(self, child: Child) -> None:
        tokens = child.token or []
        code = self._reap(child, kill=True)
        log.error("a shard process died (exit code %s); starting a new one", code)
        self._spawn()
        if tokens:
            died: ShardOutcome = (False, 0.0, b"", f"shard process died (exit code {code})")
            self.on_results(tokens, [died] * len(tokens))

    def _end(self, child: Child, reason: str) -> None:
        """Kill a busy child (and so the sandbox it holds open) and report its
        shards failed with ``reason``; a new child takes its place."""
        tokens = child.token or []
        self._reap(child, kill=True)
        self._spawn()
        if tokens:
            ended: ShardOutcome = (False, child.limit, b"", reason)
            self.on_results(tokens, [ended] * len(tokens))

    def expire(self, now: float | None = None) -> int:
        """End every child past its deadline ("time limit N s"): how many."""
        now = time.monotonic() if now is None else now
        late = [c for c in self.children.values() if c.token and c.deadline <= now]
        for child in late:
            log.warning("a shard ran past its deadline: ending it (%s)", child.reason)
            self._end(child, child.reason)
        return len(late)

    def running_batches(self) -> list[list[Any]]:
        """The tokens of every busy child, a list per child."""
        return [list(c.token) for c in self.children.values() if c.token]

    def preempt(self, wanted: Callable[[Any], bool]) -> list[Any]:
        """End the most recently started busy child whose every token ``wanted``
        holds, without reporting it (the caller gives its shards back); a new
        child takes its place. Its tokens, or [] if none is such."""
        hit = [c for c in self.children.values() if c.token and all(map(wanted, c.token))]
        if not hit:
            return []
        child = max(hit, key=lambda c: c.started)
        tokens = list(child.token)
        child.token = None
        self._reap(child, kill=True)
        self._spawn()
        return tokens

    def running(self) -> list[Any]:
        """The tokens of every shard running now."""
        return [t for c in self.children.values() if c.token for t in c.token]

    def stop_where(self, wanted: Callable[[Any], bool], reason: str) -> int:
        """End every busy child running a token for which ``wanted`` holds
        (a cancelled or finished job's running shards): how many."""
        hit = [c for c in self.children.values() if c.token and any(map(wanted, c.token))]
        for child in hit:
            self._end(child, reason)
        return len(hit)

    def tell_all(self, message: tuple) -> None:
        """Send every child a message it answers not (``("end", student, job)``)."""
        for child in list(self.children.values()):
            try:
                child.conn.send(message)
            except OSError:
                pass

    def shutdown(self, force: bool = False) -> None:
        for child in list(self.children.values()):
            self._reap(child, kill=force or child.token is not None)
