"""The worker daemon (``pimq worker``): every student vhost on one I/O thread,
shards in a pool of forked processes.

* One :class:`~pimq.worker.vhost.VhostLink` per vhost, all on one IOLoop.
* Deliveries wait in a per-vhost deque; :meth:`Worker.fill` hands them to
  idle pool processes (:mod:`pimq.worker.pool`, pipes watched by the same
  IOLoop) round-robin across vhosts, so students share the pool fairly.
  Quick shards travel in batches (:mod:`pimq.worker.pacing`).
* On SIGTERM no new shard starts; running ones get ``drain_timeout`` seconds.
* The broker's ``consumer_timeout`` (``cfg.consumer_timeout``) bounds how long
  a delivery may stay unacked, counted from its arrival here: a shard runs at
  most until :func:`ack_margin` before it; a delivery that waited so long in
  the window that it could not get its time limit is given back unrun; and a
  shard cut short by it (a consumer_timeout below the shard time limit) is
  dead-lettered at once, with that reason, instead of being retried into the
  same end.
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
from pimq.worker import metrics
from pimq.worker.execute import ShardOutcome
from pimq.worker.pacing import MAX_BATCH, Pace
from pimq.worker.pool import BROKER_DEADLINE, ShardPool
from pimq.worker.store import CodeStore, DataStore
from pimq.worker.vhost import Delivery, VhostLink

log = logging.getLogger(__name__)


def ack_margin(consumer_timeout: float) -> float:
    """Seconds kept between a shard's end and the broker's consumer_timeout
    (the result's publish and its confirm must fit in them): 5 %, 2 to 60 s."""
    return min(60.0, max(2.0, 0.05 * consumer_timeout))


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
        self.served = 0  # counts the vhosts picked (VhostLink.served: when last)
        self.links = [VhostLink(self, vhost) for vhost in cfg.vhosts]
        #: the counts behind the worker's metrics (written only with ``cfg.metrics``)
        self.metrics = metrics.WorkerMetrics(self.pool_size)
        self.textfile: metrics.TextfileWriter | None = None
        if cfg.metrics:
            if metrics.available():
                self.textfile = metrics.TextfileWriter(self.metrics, cfg.metrics)
            else:
                log.warning("no prometheus_client here: the worker's metrics are not written")
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
        if self.textfile is not None:
            metrics.every(self.ioloop, metrics.WRITE_EVERY, self.write_metrics)
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
            self.write_metrics()
        log.info("pimq worker stopped")
        return 0

    def write_metrics(self) -> None:
        """The pool's gauges now, and the textfile (if the config names one)."""
        self.metrics.pool(self.pool_size, self.pool.busy)
        if self.textfile is not None:
            self.textfile.write()

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
        """Hand waiting shards to idle pool processes, fairly across vhosts.

        The next process goes to the vhost with the fewest running now (among
        equals, the one that used the pool least lately: :meth:`VhostLink.usage`),
        and never to one that would then hold every process while another
        vhost has shards waiting; when one vhost does hold every process and
        another's shard arrives, one of its shards is preempted
        (:meth:`_preempt_for_waiting`). A lone vhost gets the whole pool.
        Quick shards (:attr:`pimq.worker.pacing.Pace.quick`) travel in batches when
        many wait, to spread the per-message cost of the pipe and the broker;
        a batch holds one vhost's shards only.
        """
        pool, ready = self.pool, self.ready
        while ready and pool.has_idle() and not self.stopping:
            for link in [link for link in ready if not link.pending]:
                ready.remove(link)
                link.in_ready = False
            first = self._pick()
            if first is None:
                break
            # A batch holds one vhost's shards: another student's shard never
            # waits behind them (a pace learnt on quick jobs would batch the
            # first shards of a slow one, and a mixed batch cannot be preempted).
            limit = 1
            if first.pace.quick:
                limit = max(1, min(MAX_BATCH, len(first.pending) // pool.idle_count))
            ready.remove(first)
            first.in_ready = False
            batch: list[Delivery] = []
            while first.pending and len(batch) < limit:
                d = first.pending.popleft()
                if self.still_in_time(d):
                    batch.append(d)
            if first.pending:
                first.in_ready = True
                ready.append(first)  # then in turn, as before
            if batch:
                limit = max(self.shard_limit(d) for d in batch)
                cap, why = self.broker_cap(batch, limit)
                pool.submit(batch, [self._task(d) for d in batch], limit, cap, why)
        self._preempt_for_waiting()

    def _busy(self) -> dict[VhostLink, int]:
        """Pool processes running shards of each vhost now."""
        busy: dict[VhostLink, int] = {}
        for tokens in self.pool.running_batches():
            for link in {d.link for d in tokens}:
                busy[link] = busy.get(link, 0) + 1
        return busy

    def _pick(self) -> VhostLink | None:
        """The waiting vhost to serve next: the fewest processes running; among
        equals the least pool time used lately, then the one served least
        recently; not one that would hold them all while another vhost waits."""
        busy = self._busy()
        now = time.monotonic()
        waiting = [link for link in self.ready if link.pending]
        best: VhostLink | None = None
        best_key: tuple[int, float, int] = (0, 0.0, 0)
        for link in waiting:
            held = busy.get(link, 0)
            others_wait = any(other is not link for other in waiting)
            if others_wait and self.pool_size > 1 and held + 1 >= self.pool_size:
                continue  # it would hold every process while another waits
            key = (held, link.usage(now), link.served)
            if best is None or key < best_key:
                best, best_key = link, key
        if best is not None:
            self.served += 1
            best.served = self.served
        return best

    def _preempt_for_waiting(self) -> None:
        """One vhost holds every process and another's shard waits: give back the
        hog's most recently started shard (it goes back to pimq.tasks at once and
        runs again later, not counted as an attempt), so the waiting one starts.
        Not with a single process: two vhosts would take it from each other."""
        pool = self.pool
        if self.stopping or self.pool_size < 2 or pool.has_idle():
            return
        busy = self._busy()
        if len(busy) != 1:
            return
        (hog,) = busy
        if busy[hog] < self.pool_size or not any(
            link is not hog and link.pending for link in self.ready
        ):
            return
        tokens = pool.preempt(lambda d: d.link is hog)
        if not tokens:
            return
        shard = tokens[0].shard
        log.info(
            "vhost %s held all %d processes while another vhost waited: job %s shard %d/%d "
            "given back to run later",
            hog.vhost,
            self.pool_size,
            shard.job,
            shard.index + 1,
            shard.count,
        )
        for d in tokens:
            d.link.settle(d.generation, [d.tag], False)
        self.fill()

    def _ack_left(self, d: Delivery) -> float:
        """Seconds this delivery may still run before the broker's
        consumer_timeout (less :func:`ack_margin`); inf without one."""
        ct = float(self.cfg.consumer_timeout)
        if not ct:
            return float("inf")
        return ct - ack_margin(ct) - (time.monotonic() - d.received)

    def still_in_time(self, d: Delivery) -> bool:
        """Whether ``d`` can still get its whole time limit before the broker's
        consumer_timeout. If it waited in the window too long for that, it is
        given back unrun (its redelivery starts a fresh timeout) and False."""
        ct = float(self.cfg.consumer_timeout)
        waited = time.monotonic() - d.received
        if not ct or waited <= ack_margin(ct) or self._ack_left(d) >= self.shard_limit(d):
            return True
        log.warning(
            "vhost %s: job %s shard %d/%d waited %.0f s here, too close to the broker's "
            "consumer_timeout of %g s to run: given back",
            d.link.vhost,
            d.shard.job,
            d.shard.index + 1,
            d.shard.count,
            waited,
            ct,
        )
        d.link.settle(d.generation, [d.tag], False)
        return False

    def broker_cap(self, batch: list[Delivery], limit: float) -> tuple[float, str]:
        """The batch's deadline from the broker's consumer_timeout, and the reason
        a shard ended by it gets."""
        cap = min(self._ack_left(d) for d in batch)
        why = (
            f"{BROKER_DEADLINE} of {self.cfg.consumer_timeout:g} s would pass (the shard ran "
            f"{max(cap, 0):.0f} s; its time limit of {limit:g} s is longer): not retried"
        )
        return cap, why

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
        now = time.monotonic()
        for d, outcome in zip(batch, outcomes, strict=True):
            by_link.setdefault(d.link, []).append((d, outcome))
            d.link.used(outcome[1], now)
            self.metrics.ran(d.link.vhost, outcome[1])
            if not outcome[0] and metrics.is_limit_kill(outcome[3]):
                self.metrics.killed(d.link.vhost)
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
