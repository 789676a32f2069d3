"""The worker daemon: every student vhost on one I/O thread, shards in a pool.

* One :class:`pika.SelectConnection` per vhost, all on one shared IOLoop.
* Deliveries wait in a per-vhost deque; :meth:`Worker.fill` hands them to
  idle pool processes (:mod:`pimq.pool`, pipes watched by the same IOLoop)
  round-robin across vhosts, so students share the pool fairly.
* A finished shard's result is published with a publisher confirm and the
  shard is acked when that confirm arrives. Quick shards run in batches, and
  the results of one batch that belong to one job travel as one message;
  acks are coalesced into one ``multiple`` ack per I/O round where possible
  (:class:`pimq.amqp.Acks`).
* A shard that raises is re-published with ``pimq-attempt`` + 1 and acked;
  after :data:`MAX_ATTEMPTS` it goes to ``pimq.dead`` with the traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.select_connection import IOLoop

from pimq import amqp, jobs, topology
from pimq.config import WorkerConfig
from pimq.execute import Outcome, last_line
from pimq.pacing import MAX_BATCH, Pace
from pimq.pool import ShardPool
from pimq.wire import (
    BadMessage,
    Shard,
    dead_properties,
    decode_control,
    encode_results,
    parse_shard,
    retry_properties,
    shard_result,
)

log = logging.getLogger("pimq.worker")

MAX_ATTEMPTS = 3
BACKOFF_MAX = 30.0
CANCEL_MEMORY = 10000  # ended jobs remembered per vhost
# Results are transient: their confirms need no disk write. If a broker restart
# loses one, the controller re-publishes every shard it has no result for.
RESULT_PROPS = pika.BasicProperties(delivery_mode=1, content_type="application/json")


@dataclass
class Delivery:
    link: VhostLink
    generation: int
    tag: int
    props: pika.BasicProperties
    shard: Shard


class VhostLink:
    """The connection, channel and local queue of one student vhost."""

    def __init__(self, worker: Worker, vhost: str) -> None:
        self.worker = worker
        self.vhost = vhost
        self.conn: pika.SelectConnection | None = None
        self.channel: Any = None
        self.generation = 0
        self.pending: deque[Delivery] = deque()
        self.in_ready = False
        self.confirms = amqp.Confirms()
        self.acks = amqp.Acks()
        self.flush_due = False
        self.backoff = 1.0
        self.retry_timer: Any = None
        self.consumer_tag: str | None = None
        self.cancelled: dict[str, None] = {}  # insertion-ordered set
        self.closed = True
        self.pace = Pace()
        self.prefetch = 0

    # -- connection life cycle -------------------------------------------
    def connect(self) -> None:
        self.retry_timer = None
        if self.worker.stopping:
            return
        self.generation += 1
        self.closed = False
        cfg = self.worker.cfg
        params = amqp.parameters(
            cfg.host, cfg.port, self.vhost, cfg.user, cfg.password, cfg.heartbeat, "pimq-worker"
        )
        self.conn = pika.SelectConnection(
            parameters=params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self.worker.ioloop,
        )

    def _describe(self, exc: BaseException | None) -> str:
        cfg = self.worker.cfg
        return amqp.describe(exc, cfg.host, cfg.port, self.vhost, cfg.user)

    def _on_open(self, conn: pika.SelectConnection) -> None:
        if self.worker.stopping:
            conn.close()
            return
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, exc: BaseException) -> None:
        self._lost(self._describe(exc))

    def _on_closed(self, conn: Any, exc: BaseException) -> None:
        if self.worker.stopping:
            log.info("vhost %s: disconnected", self.vhost)
            self._lost(None)
        else:
            self._lost(self._describe(exc))

    def _lost(self, why: str | None) -> None:
        self.channel = None
        self.consumer_tag = None
        self.closed = True
        self.pending.clear()  # unacked: the broker redelivers them
        self.confirms.reset()
        self.acks.reset()
        if self.worker.stopping:
            self.worker.link_closed()
            return
        delay = self.backoff * (0.75 + 0.5 * (os.getpid() % 7) / 7)
        log.warning("vhost %s: %s; reconnecting in %.1f s", self.vhost, why, delay)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.retry_timer = self.worker.ioloop.call_later(delay, self.connect)

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        self.confirms.reset()
        self.acks.reset()
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm)
        topology.declare_shared(channel, on_done=self._declare_control)

    def _on_channel_closed(self, channel: Any, exc: BaseException) -> None:
        if channel is not self.channel:
            return
        self.channel = None
        if not self.worker.stopping:
            log.warning("vhost %s: channel closed: %s", self.vhost, exc)
        if self.conn is not None and self.conn.is_open:
            self.conn.close()

    def _declare_control(self) -> None:
        ch = self.channel
        name = topology.control_queue(socket.gethostname(), os.getpid(), self.generation)
        ch.queue_declare(queue=name, exclusive=True, auto_delete=True)
        ch.queue_bind(queue=name, exchange=topology.CONTROL, routing_key="")
        self.prefetch = self.worker.prefetch_for(self.pace)
        ch.basic_qos(prefetch_count=self.prefetch, global_qos=True)
        ch.basic_consume(queue=name, on_message_callback=self._on_control, auto_ack=True)
        self.consumer_tag = ch.basic_consume(
            queue=topology.TASKS, on_message_callback=self._on_task, callback=self._on_consuming
        )

    def _on_consuming(self, _frame: Any) -> None:
        self.backoff = 1.0
        cfg = self.worker.cfg
        log.info(
            "vhost %s: connected to %s:%s, consuming %s",
            self.vhost,
            cfg.host,
            cfg.port,
            topology.TASKS,
        )

    def stop_consuming(self) -> None:
        """Take no more work; give back what waits locally."""
        if self.retry_timer is not None:
            self.worker.ioloop.remove_timeout(self.retry_timer)
            self.retry_timer = None
        ch = self.channel
        if ch is not None and ch.is_open:
            if self.consumer_tag:
                ch.basic_cancel(self.consumer_tag)
            for d in self.pending:
                self.acks.nack(ch, d.tag)
        self.pending.clear()

    def busy(self) -> bool:
        return bool(self.confirms) or bool(self.acks)

    def close(self) -> None:
        if self.conn is not None and self.conn.is_open:
            self.conn.close()
        elif self.conn is None or self.conn.is_closed:
            if not self.closed:
                self.closed = True
            self.worker.link_closed()

    # -- publishing with confirms ----------------------------------------
    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        props: pika.BasicProperties,
        on_confirm: Callable[[bool], None] | None = None,
    ) -> bool:
        ch = self.channel
        if ch is None or not ch.is_open:
            return False
        ch.basic_publish(exchange, routing_key, body, props)
        self.confirms.published(on_confirm)
        return True

    def _on_confirm(self, frame: Any) -> None:
        self.confirms.on_frame(frame)
        if self.worker.stopping:
            self.worker.check_drained()

    def settle(self, generation: int, tags: list[int], ok: bool) -> None:
        """Ack deliveries (or give them back if our publish was refused)."""
        ch = self.channel
        if generation != self.generation or ch is None or not ch.is_open:
            return
        for tag in tags:
            if ok:
                self.acks.ack(tag)
            else:
                self.acks.nack(ch, tag)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self.flush_due:
            self.flush_due = True
            self.worker.ioloop.call_later(0, self._flush)

    def _flush(self) -> None:
        self.flush_due = False
        ch = self.channel
        if ch is not None and ch.is_open:
            self.acks.flush(ch)
        if self.worker.stopping:
            self.worker.check_drained()

    # -- incoming messages -----------------------------------------------
    def _on_task(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        tag = method.delivery_tag
        self.acks.received(tag)
        if self.worker.stopping:
            self.acks.nack(ch, tag)
            return
        try:
            shard = parse_shard(props, body)
        except BadMessage as exc:
            self.dead_letter(tag, props, body, f"unparsable message: {exc}")
            return
        if shard.job in self.cancelled:
            self.settle(self.generation, [tag], True)
            return
        if not jobs.exists(shard.kind):
            reason = f"unknown job kind {shard.kind!r} on worker {self.worker.name}"
            self.dead_letter(tag, props, body, reason, shard=shard)
            return
        self.pending.append(Delivery(self, self.generation, tag, props, shard))
        self.worker.enqueue(self)

    def _on_control(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        control = decode_control(body)
        if control is None:
            return
        job, reason = control
        self.cancelled[job] = None
        while len(self.cancelled) > CANCEL_MEMORY:
            del self.cancelled[next(iter(self.cancelled))]
        keep: deque[Delivery] = deque()
        dropped: list[int] = []
        for d in self.pending:
            if d.shard.job == job:
                dropped.append(d.tag)
            else:
                keep.append(d)
        self.pending = keep
        self.settle(self.generation, dropped, True)
        if reason != "done" or dropped:
            log.info(
                "vhost %s: job %s %s, dropped %d queued shard(s)",
                self.vhost,
                job,
                reason,
                len(dropped),
            )

    def dead_letter(
        self,
        tag: int,
        props: Any,
        body: bytes,
        reason: str,
        tb: str | None = None,
        shard: Shard | None = None,
    ) -> None:
        log.warning("vhost %s: dead-lettered a message: %s", self.vhost, reason)
        generation = self.generation
        self.publish(
            topology.DEAD,
            "",
            body,
            dead_properties(props, reason, self.worker.name, tb),
            lambda ok: self.settle(generation, [tag], ok),
        )
        if shard is not None:
            failure = shard_result(shard.index, False, error=reason)
            body = encode_results(shard.job, self.worker.name, [failure])
            self.publish(topology.RESULTS, shard.reply_to, body, RESULT_PROPS)

    # -- outcome of a shard (on the I/O thread) --------------------------
    def _adapt_prefetch(self, seconds: float, size: int) -> None:
        """Quick shards need a deeper pipeline than slow ones (:mod:`pimq.pacing`)."""
        self.pace.observe(seconds, size)
        wanted = self.worker.prefetch_for(self.pace)
        if wanted != self.prefetch and self.channel is not None:
            self.prefetch = wanted
            self.channel.basic_qos(prefetch_count=wanted, global_qos=True)

    def finish(self, done: list[tuple[Delivery, Outcome]]) -> None:
        """Publish the results of shards that ran (one message per job), retry
        or dead-letter the ones that raised."""
        batches: dict[tuple[str, str], list[tuple[Delivery, float, bytes]]] = {}
        for d, (ok, seconds, entry, tb) in done:
            shard = d.shard
            if d.generation != self.generation or self.channel is None:
                log.info(
                    "vhost %s: job %s shard %d/%d done after the connection was lost; "
                    "the broker redelivers it",
                    self.vhost,
                    shard.job,
                    shard.index + 1,
                    shard.count,
                )
            elif shard.job in self.cancelled:
                self.settle(d.generation, [d.tag], True)
            elif ok:
                self._adapt_prefetch(seconds, len(shard.body))
                batches.setdefault((shard.job, shard.reply_to), []).append((d, seconds, entry))
            else:
                self._adapt_prefetch(seconds, len(shard.body))
                self._failed(d, tb)
        generation = self.generation
        for (job, reply_to), batch in batches.items():
            if self.worker.log_shards:
                self._log_batch(batch)
            body = encode_results(job, self.worker.name, [entry for _d, _s, entry in batch])
            tags = [d.tag for d, _s, _e in batch]
            self.publish(
                topology.RESULTS,
                reply_to,
                body,
                RESULT_PROPS,
                lambda confirmed, tags=tags: self.settle(generation, tags, confirmed),
            )

    def _log_batch(self, batch: list[tuple[Delivery, float, bytes]]) -> None:
        shard = batch[0][0].shard
        which = ",".join(str(d.shard.index + 1) for d, _s, _e in batch)
        log.info(
            "job %s shard%s %s/%d %s vhost %s %.3f s",
            shard.job,
            "s" if len(batch) > 1 else "",
            which,
            shard.count,
            shard.kind,
            self.vhost,
            sum(seconds for _d, seconds, _e in batch),
        )

    def _failed(self, d: Delivery, tb: str) -> None:
        shard, generation = d.shard, d.generation
        attempt = shard.attempt + 1
        error = last_line(tb)
        if attempt < MAX_ATTEMPTS:
            log.warning(
                "job %s shard %d/%d failed (attempt %d of %d), retrying: %s",
                shard.job,
                shard.index + 1,
                shard.count,
                attempt,
                MAX_ATTEMPTS,
                error,
            )
            self.publish(
                topology.TASKS,
                topology.TASKS,
                shard.body,
                retry_properties(d.props, attempt),
                lambda confirmed: self.settle(generation, [d.tag], confirmed),
            )
        else:
            reason = f"job raised on all {MAX_ATTEMPTS} attempts: {error}"
            self.dead_letter(d.tag, d.props, shard.body, reason, tb, shard)


class Worker:
    def __init__(
        self, cfg: WorkerConfig, drain_timeout: float = 30.0, log_shards: bool = True
    ) -> None:
        self.cfg = cfg
        self.name = socket.gethostname()
        self.drain_timeout = drain_timeout
        self.log_shards = log_shards
        self.ioloop = IOLoop()
        self.pool_size = cfg.pool_size()
        self.pool = ShardPool(self.pool_size, self.ioloop, self._done)
        self.ready: deque[VhostLink] = deque()
        self.links = [VhostLink(self, vhost) for vhost in cfg.vhosts]
        self.stopping = False
        self.signalled = 0
        self.deadline = 0.0

    def run(self) -> int:
        cfg = self.cfg
        log.info(
            "pimq worker on %s: %d vhost(s), %d process(es), broker %s:%s, heartbeat %s s",
            self.name,
            len(self.links),
            self.pool_size,
            cfg.host,
            cfg.port,
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

        Quick shards (:attr:`pimq.pacing.Pace.quick`) travel in batches when
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
                pool.submit(batch, [self._task(d) for d in batch])

    def _task(self, d: Delivery) -> tuple:
        s = d.shard
        return (s.kind, s.body, s.params_json, s.index)

    def _done(self, batch: list[Delivery], outcomes: list[Outcome]) -> None:
        by_link: dict[VhostLink, list[tuple[Delivery, Outcome]]] = {}
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
