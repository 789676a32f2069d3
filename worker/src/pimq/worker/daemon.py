"""The worker daemon (``pimq worker``): every student vhost on one I/O thread,
shards in a pool of forked processes.

* One :class:`~pimq.worker.vhost.VhostLink` per vhost, all on one IOLoop.
* Deliveries wait in a per-vhost deque; :meth:`Worker.fill` hands them to
  idle pool processes (:mod:`pimq.worker.pool`, pipes watched by the same
  IOLoop) round-robin across vhosts, so students share the pool fairly.
  Quick shards travel in batches (:mod:`pimq.worker.pacing`).
* On SIGTERM no new shard starts; running ones get ``drain_timeout`` seconds.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections import deque
from typing import Any

from pika.adapters.select_connection import IOLoop

from pimq.config import WorkerConfig
from pimq.protocol.wire import MODULE_KIND
from pimq.worker.execute import ShardOutcome
from pimq.worker.pacing import MAX_BATCH, Pace
from pimq.worker.pool import ShardPool
from pimq.worker.store import CodeStore, DataStore
from pimq.worker.vhost import Delivery, VhostLink

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        cfg: WorkerConfig,
        drain_timeout: float = 30.0,
        log_shards: bool = True,
        name: str | None = None,
    ) -> None:
        self.cfg = cfg
        #: this Pi's name in results and routes (``pimq run --pis pi1,pi2``)
        self.name = name or cfg.name or socket.gethostname()
        self.drain_timeout = drain_timeout
        self.log_shards = log_shards
        self.ioloop = IOLoop()
        self.pool_size = cfg.pool_size()
        self.pool = ShardPool(self.pool_size, self.ioloop, self._done)
        self.store = CodeStore(cfg.store)
        self.datastore = DataStore(cfg.store)
        self.ready: deque[VhostLink] = deque()
        self.links = [VhostLink(self, vhost) for vhost in cfg.vhosts]
        self.stopping = False
        self.signalled = 0
        self.deadline = 0.0

    def run(self) -> int:
        cfg = self.cfg
        log.info(
            "pimq worker on %s: %d vhost(s), %d process(es), broker %s:%s (%s), heartbeat %s s",
            self.name,
            len(self.links),
            self.pool_size,
            cfg.host,
            cfg.port,
            f"TLS, CA {cfg.ca}" if cfg.ca else "plaintext",
            cfg.heartbeat,
        )
        self.pool.start()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for link in self.links:
                link.connect()
            self.ioloop.call_later(0.2, self._tick)
            self.ioloop.start()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.pool.shutdown(force=self.pool.busy > 0)
        log.info("pimq worker stopped")
        return 0

    def prefetch_for(self, pace: Pace) -> int:
        """Unacked shards per vhost: the configured number, or by the pace."""
        return self.cfg.prefetch or pace.prefetch(self.pool_size)

    # -- scheduling --------------------------------------------------------
    def enqueue(self, link: VhostLink) -> None:
        if not link.in_ready:
            link.in_ready = True
            self.ready.append(link)
        self.fill()

    def fill(self) -> None:
        """Hand waiting shards to idle pool processes, round-robin over vhosts.

        Quick shards (:attr:`pimq.worker.pacing.Pace.quick`) travel in batches when
        many wait, to spread the per-message cost of the pipe and the broker.
        """
        pool, ready = self.pool, self.ready
        while ready and pool.has_idle() and not self.stopping:
            waiting = sum(len(link.pending) for link in ready)
            limit = max(1, min(MAX_BATCH, waiting // pool.idle_count))
            batch: list[Delivery] = []
            while ready and len(batch) < limit:
                link = ready[0]
                if batch and not link.pace.quick:
                    break
                ready.popleft()
                link.in_ready = False
                if not link.pending:
                    continue
                batch.append(link.pending.popleft())
                if link.pending:
                    link.in_ready = True
                    ready.append(link)
                if not link.pace.quick:
                    break
            if batch:
                limit = max(self.shard_limit(d) for d in batch)
                pool.submit(batch, [self._task(d) for d in batch], limit)

    def shard_limit(self, d: Delivery) -> float:
        """The room's per-shard limit, or the student's if lower (``--shard-timeout``)."""
        room = float(self.cfg.shard_timeout)
        asked = d.shard.shard_timeout
        return min(room, asked) if asked > 0 else room

    def _task(self, d: Delivery) -> tuple:
        s = d.shard
        body: bytes | tuple = s.body
        if s.data is not None:  # read by the pool process from this Pi's copy
            digest, start, end = s.data
            body = (str(self.datastore.path(d.link.vhost, digest)), start, end)
        if s.kind == MODULE_KIND:
            cfg = self.cfg
            filename = d.link.module_files.get(s.code, "module.py")
            module = (cfg.store, cfg.sandbox_socket, d.link.vhost, s.job, s.code, filename)
            return (s.kind, body, s.params_json, s.index, module)
        return (s.kind, body, s.params_json, s.index)

    def stop_job(self, link: VhostLink, job: str, reason: str, module: bool) -> int:
        """The job ended (done, cancelled, failed): end its running shards here,
        and its sandboxes; how many shards were stopped."""
        stopped = self.pool.stop_where(
            lambda d: d.link is link and d.shard.job == job, f"job {reason}"
        )
        if module:
            self.pool.tell_all(("end", link.vhost, job))
        return stopped

    def _done(self, batch: list[Delivery], outcomes: list[ShardOutcome]) -> None:
        by_link: dict[VhostLink, list[tuple[Delivery, ShardOutcome]]] = {}
        for d, outcome in zip(batch, outcomes, strict=True):
            by_link.setdefault(d.link, []).append((d, outcome))
        for link, done in by_link.items():
            link.finish(done)
        self.fill()
        if self.stopping:
            self.check_drained()

    # -- stopping ----------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signalled += 1
        if self.signalled > 1:
            self.deadline = 0.0  # a second signal: stop now

    def _tick(self) -> None:
        self.pool.expire()
        now = time.monotonic()
        for link in self.links:
            if link.waiting_since:
                link.expire_waiting(now)
            if link.routes:
                link.expire_routes(now)
        if self.signalled and not self.stopping:
            self.begin_stop()
        if self.stopping:
            if time.monotonic() >= self.deadline:
                log.warning("drain timeout: giving back %d running shard(s)", self.pool.busy)
                self._close_all()
                self.deadline = float("inf")
                self.ioloop.call_later(5.0, self.ioloop.stop)
            else:
                self.check_drained()
        self.ioloop.call_later(0.2, self._tick)

    def begin_stop(self) -> None:
        log.info("stopping: no new shards; waiting for %d running shard(s)", self.pool.busy)
        self.stopping = True
        self.deadline = time.monotonic() + self.drain_timeout
        if self.signalled > 1:
            self.deadline = 0.0
        self.ready.clear()
        for link in self.links:
            link.stop_consuming()
        self.check_drained()

    def check_drained(self) -> None:
        if self.pool.busy == 0 and not any(link.busy() for link in self.links):
            self._close_all()

    def _close_all(self) -> None:
        for link in self.links:
            link.close()
        self.link_closed()

    def link_closed(self) -> None:
        if self.stopping and all(link.closed for link in self.links):
            self.ioloop.stop()
