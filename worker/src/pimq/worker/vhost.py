"""One student vhost as the worker sees it: a :class:`~pimq.protocol.link.Link`
that consumes ``pimq.tasks`` and the control broadcasts, keeps the deliveries
waiting for a pool process, and publishes what became of each shard.

A finished shard's result is published with a publisher confirm and the shard
is acked when that confirm arrives; quick shards' results travel one message
per job per batch, and acks are coalesced per I/O round
(:class:`pimq.protocol.amqp.Acks`). Failures: :mod:`pimq.worker.retry`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pika

from pimq import jobs
from pimq.protocol import amqp, topology
from pimq.protocol.link import Backoff, Link
from pimq.protocol.wire import (
    MODULE_KIND,
    BadMessage,
    Here,
    Shard,
    decode_code,
    decode_control,
    decode_data_put,
    decode_data_rm,
    decode_rollcall,
    decode_route,
    encode_here,
    encode_results,
    parse_shard,
    shard_result,
)
from pimq.worker import metrics, retry
from pimq.worker.datasets import Datasets
from pimq.worker.execute import ShardOutcome
from pimq.worker.pacing import Pace
from pimq.worker.pool import BROKER_DEADLINE
from pimq.worker.store import StoreError

if TYPE_CHECKING:
    from pimq.worker.daemon import Worker

log = logging.getLogger(__name__)

CANCEL_MEMORY = 10000  # ended jobs remembered per vhost
MODULE_MEMORY = 1000  # module file names remembered per vhost
#: a shard whose module has not been announced within this many seconds is
#: dead-lettered (its controller is gone: it re-announces every 5 s)
CODE_WAIT = 30.0
#: half-life of a vhost's recent pool use, in seconds (VhostLink.usage)
USAGE_HALF_LIFE = 120.0
#: publishes of one batch of results the broker may refuse before its shards
#: are dead-lettered: 0.5 s, 1 s, 2 s, 4 s, then every RESULT_RETRY_MAX s, about a
#: minute in all, so a result queue that is full only while a busy head drains
#: it loses nothing (a result larger than the cap never fits: dead-lettered then)
RESULT_TRIES = 12
RESULT_RETRY_MAX = 8.0


def is_ack_timeout(exc: BaseException) -> bool:
    """Whether a channel was closed by the broker for its consumer_timeout
    (``PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out``)."""
    text = str(getattr(exc, "reply_text", "") or "")
    return (
        getattr(exc, "reply_code", 0) == 406 and "acknowledgement" in text and "timed out" in text
    )


#: a routed job's queue is consumed this long after its last route
#: announcement (its controller re-announces every 5 s while the job runs)
ROUTE_LEASE = 30.0
#: routed jobs consumed at once per vhost (each takes a share of the window)
MAX_ROUTES = 8


@dataclass
class Delivery:
    link: VhostLink
    generation: int
    tag: int
    props: pika.BasicProperties
    shard: Shard
    #: when it arrived here (monotonic): the broker's consumer_timeout counts from then
    received: float = 0.0
    #: the queue it came from: ``pimq.tasks`` or a routed job's ``pimq.job.<id>``
    queue: str = topology.TASKS


class VhostLink(Link):
    """The connection, channel and local queue of one student vhost."""

    connection_name = "pimq-worker"

    def __init__(self, worker: Worker, vhost: str) -> None:
        cfg = worker.cfg
        params = amqp.parameters(
            cfg.host, cfg.port, vhost, cfg.user, cfg.password, cfg.heartbeat, "pimq-worker", cfg.ca
        )
        super().__init__(worker.ioloop, params, (cfg.host, cfg.port, vhost, cfg.user))
        self.worker = worker
        self.worker_name = worker.name
        self.vhost = vhost
        self.pending: deque[Delivery] = deque()
        self.in_ready = False
        self.served = 0  # when the scheduler last picked this vhost (Worker.served)
        self._usage = 0.0  # pool seconds used, decayed (see usage())
        self._usage_at = 0.0
        self.acks = amqp.Acks()
        self.flush_due = False
        # Jittered by pid so that a room's workers do not all come back at once.
        self.backoff = Backoff(1.0, 30.0)
        self.jitter = 0.75 + 0.5 * (os.getpid() % 7) / 7
        self.retry_timer: Any = None
        self.consumer_tag: str | None = None
        self.cancelled: dict[str, None] = {}  # insertion-ordered set
        self.closed = True
        self.pace = Pace()
        #: the window of the current ``pimq.tasks`` consumer (see :meth:`_consume`)
        self.prefetch = 0
        self.reconsume = False  # a new window is due: consume again once it fits
        #: shards of a student module whose source has not arrived yet, by digest
        self.waiting: dict[str, list[Delivery]] = {}
        self.waiting_since: dict[str, float] = {}
        #: digest -> file name of the modules announced (for the tracebacks)
        self.module_files: dict[str, str] = {}
        self.module_jobs: dict[str, None] = {}  # jobs of student modules seen here
        #: (job, index, attempt) of shards held when the broker closed the channel
        #: for its consumer_timeout: a redelivery of one is dead-lettered, not run
        #: into the same end again
        self.ack_timed_out: dict[tuple[str, int, int], None] = {}
        #: routed jobs this Pi takes part in: job -> (its queue, last announced)
        self.routes: dict[str, tuple[str, float]] = {}
        #: consumer tags of the routed jobs' queues consumed now, by queue
        self.route_tags: dict[str, str] = {}
        #: the student's datasets on this Pi: uploads arriving, removals
        self.data = Datasets(self, worker.datastore, worker.cfg.dataset_quota())

    # -- fair share ------------------------------------------------------
    def usage(self, now: float) -> float:
        """Pool seconds this vhost's shards used here lately (halved every
        :data:`USAGE_HALF_LIFE` s): who goes first among vhosts with as many
        processes running."""
        return self._usage * 0.5 ** (max(0.0, now - self._usage_at) / USAGE_HALF_LIFE)

    def used(self, seconds: float, now: float) -> None:
        self._usage = self.usage(now) + max(0.0, seconds)
        self._usage_at = now

    # -- connection life cycle -------------------------------------------
    def connect(self) -> None:
        self.retry_timer = None
        if self.worker.stopping:
            return
        self.closed = False
        super().connect()

    def on_down(self, why: str, was_open: bool) -> None:
        self.consumer_tag = None
        self.route_tags.clear()
        self.data.lost()
        self.reconsume = False
        self.closed = True
        self.pending.clear()  # unacked: the broker redelivers them
        self.waiting.clear()
        self.waiting_since.clear()
        self.acks.reset()
        if self.worker.stopping:
            log.info("vhost %s: disconnected", self.vhost)
            self.worker.link_closed()
            return
        delay = self.backoff.next() * self.jitter
        log.warning("vhost %s: %s; reconnecting in %.1f s", self.vhost, why, delay)
        self.retry_timer = self.worker.ioloop.call_later(delay, self.connect)

    def on_channel_closed(self, exc: BaseException) -> None:
        if not self.worker.stopping:
            log.warning("vhost %s: channel closed: %s", self.vhost, exc)
        if is_ack_timeout(exc):
            self._remember_ack_timeout()
        super().on_channel_closed(exc)

    def _remember_ack_timeout(self) -> None:
        """The broker closed the channel for a delivery held past its
        consumer_timeout (one the worker did not know of, or set lower by hand):
        remember the shards it held, so their redeliveries end, not loop."""
        held = [d for d in self.worker.pool.running() if d.link is self]
        for d in held:
            self.ack_timed_out[(d.shard.job, d.shard.index, d.shard.attempt)] = None
        while len(self.ack_timed_out) > CANCEL_MEMORY:
            del self.ack_timed_out[next(iter(self.ack_timed_out))]
        log.warning(
            "vhost %s: the broker's consumer_timeout closed the channel while %d shard(s) "
            "ran; their redeliveries will be dead-lettered",
            self.vhost,
            len(held),
        )

    def on_ready(self, channel: Any) -> None:
        if self.worker.stopping:
            self.close()
            return
        self.acks.reset()
        name = topology.control_queue(self.worker_name, os.getpid(), self.generation)
        channel.queue_declare(queue=name, exclusive=True, auto_delete=True)
        channel.queue_bind(queue=name, exchange=topology.CONTROL, routing_key="")
        channel.basic_consume(queue=name, on_message_callback=self._on_control, auto_ack=True)
        self.prefetch = self.worker.prefetch_for(self.pace)
        self._consume(channel, self._on_consuming)

    def _consume(self, channel: Any, callback: Any = None) -> None:
        """Consume ``pimq.tasks`` with a window of :attr:`prefetch` shards.

        RabbitMQ fixes a consumer's prefetch when it starts (per-consumer QoS;
        the channel-wide ``global`` QoS is deprecated and RabbitMQ 4 can refuse
        it), so a new window means a new consumer. The old one is cancelled at
        once, and the new one starts when the link has settled everything the
        old one gave it (:meth:`_consume_if_due`): the link never holds more
        than its current window (and so never more shard bytes than
        :data:`pimq.worker.pacing.MAX_HELD_BYTES`). The window changes a few
        times as a job starts; each change costs one round trip of refill.
        """
        self.reconsume = False
        self.route_tags.clear()
        # While this Pi takes part in routed jobs (``--pis``) of this student,
        # it consumes their queues instead of pimq.tasks (whose shards the
        # other Pis take, and which is first come, first served anyway); the
        # routes share the window, so the link never holds more than it.
        routed = list(dict.fromkeys(q for q, _seen in self.routes.values()))[:MAX_ROUTES]
        if not routed:
            channel.basic_qos(prefetch_count=self.prefetch)
            self.consumer_tag = channel.basic_consume(
                queue=topology.TASKS,
                on_message_callback=partial(self._on_task, topology.TASKS),
                callback=callback,
            )
            return
        self.consumer_tag = None
        window = max(1, self.prefetch // len(routed))
        for queue in routed:
            # declared here too (same arguments): a queue its controller has
            # just deleted comes back empty instead of closing this channel
            channel.queue_declare(
                queue=queue, durable=True, arguments=topology.job_queue_arguments()
            )
            channel.queue_bind(queue=queue, exchange=topology.TASKS, routing_key=queue)
            channel.basic_qos(prefetch_count=window)
            self.route_tags[queue] = channel.basic_consume(
                queue=queue, on_message_callback=partial(self._on_task, queue), callback=callback
            )
            callback = None

    def _cancel_consumers(self) -> None:
        ch = self.channel
        tags = [self.consumer_tag, *self.route_tags.values()]
        self.consumer_tag = None
        self.route_tags.clear()
        if ch is not None and ch.is_open:
            for tag in tags:
                if tag:
                    ch.basic_cancel(tag)

    def _reconsume(self) -> None:
        """A new set of queues or windows: cancel every consumer now, consume
        again once the old windows are settled (:meth:`_consume_if_due`)."""
        ch = self.channel
        if ch is None or not ch.is_open or self.worker.stopping:
            return
        self._cancel_consumers()
        self.reconsume = True
        self._flush_soon()

    def _consume_if_due(self) -> None:
        ch = self.channel
        if (
            self.reconsume
            and ch is not None
            and ch.is_open
            and not self.worker.stopping
            and self.acks.outstanding == 0
            and not self.acks  # every ack sent: the broker sees the old window empty
        ):
            self._consume(ch)

    def _on_consuming(self, _frame: Any) -> None:
        self.backoff.reset()
        cfg = self.worker.cfg
        log.info(
            "vhost %s: connected to %s:%s%s, consuming %s",
            self.vhost,
            cfg.host,
            cfg.port,
            " over TLS" if cfg.ca else "",
            topology.TASKS,
        )

    def stop_consuming(self) -> None:
        """Take no more work; give back what waits locally."""
        if self.retry_timer is not None:
            self.worker.ioloop.remove_timeout(self.retry_timer)
            self.retry_timer = None
        ch = self.channel
        if ch is not None and ch.is_open:
            self._cancel_consumers()
            for d in self.pending:
                self.acks.nack(ch, d.tag)
            for parked in self.waiting.values():
                for d in parked:
                    self.acks.nack(ch, d.tag)
        self.pending.clear()
        self.waiting.clear()
        self.waiting_since.clear()

    def busy(self) -> bool:
        return bool(self.confirms) or bool(self.acks)

    def close(self) -> None:
        if self.conn is not None and self.conn.is_open:
            self.conn.close()
        elif self.conn is None or self.conn.is_closed:
            self.closed = True
            self.worker.link_closed()

    def on_confirm_frame(self) -> None:
        if self.worker.stopping:
            self.worker.check_drained()

    # -- acknowledgements ------------------------------------------------
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
            self._consume_if_due()
        if self.worker.stopping:
            self.worker.check_drained()

    # -- incoming messages -----------------------------------------------
    def _on_task(self, queue: str, ch: Any, method: Any, props: Any, body: bytes) -> None:
        tag = method.delivery_tag
        self.acks.received(tag)
        if self.worker.stopping:
            self.acks.nack(ch, tag)
            return
        try:
            shard = parse_shard(props, body)
        except BadMessage as exc:
            retry.dead_letter(self, tag, props, body, f"unparsable message: {exc}")
            return
        if shard.job in self.cancelled:
            self.settle(self.generation, [tag], True)
            return
        key = (shard.job, shard.index, shard.attempt)
        if method.redelivered and key in self.ack_timed_out:
            reason = (
                "held past the broker's consumer_timeout (the channel was closed for it): "
                "not run again"
            )
            retry.dead_letter(self, tag, props, body, reason, shard=shard)
            return
        delivery = Delivery(
            self, self.generation, tag, props, shard, received=time.monotonic(), queue=queue
        )
        if shard.data is not None and not self.worker.datastore.has(self.vhost, shard.data[0]):
            self._missing_data(delivery)
            return
        if shard.kind == MODULE_KIND:
            self._remember_module_job(shard.job)
            if not self.worker.store.has(self.vhost, shard.code):
                # its source is announced on pimq.control (again every few s)
                self.waiting.setdefault(shard.code, []).append(delivery)
                self.waiting_since.setdefault(shard.code, time.monotonic())
                return
        elif not jobs.exists(shard.kind):
            reason = f"unknown job kind {shard.kind!r} on worker {self.worker_name}"
            retry.dead_letter(self, tag, props, body, reason, shard=shard)
            return
        self.pending.append(delivery)
        self.worker.enqueue(self)

    def _missing_data(self, d: Delivery) -> None:
        """A shard over a dataset this Pi does not hold (it joined after the
        put, its disk was wiped, or the dataset is another student's): its
        controller sends it again with the bytes; acked once that is said."""
        shard = d.shard
        assert shard.data is not None
        error = f"dataset {shard.data[0][:12]} is not on {self.worker_name}"
        log.info(
            "vhost %s: job %s shard %d names dataset %s, not held for this student: "
            "asking for its bytes",
            self.vhost,
            shard.job,
            shard.index + 1,
            shard.data[0][:12],
        )
        entry = shard_result(shard.index, False, error=error, missing=True)
        generation = self.generation
        self.publish(
            topology.RESULTS,
            shard.reply_to,
            encode_results(shard.job, self.worker_name, [entry]),
            topology.RESULT_PROPS,
            lambda ok: self.settle(generation, [d.tag], ok),
        )

    def _remember_module_job(self, job: str) -> None:
        self.module_jobs[job] = None
        while len(self.module_jobs) > MODULE_MEMORY:
            del self.module_jobs[next(iter(self.module_jobs))]

    def _on_code(self, job: str, code: str, filename: str, source: str) -> None:
        """A student module announced: keep it in the store, run what waited for it."""
        self.module_files[code] = filename
        while len(self.module_files) > MODULE_MEMORY:
            del self.module_files[next(iter(self.module_files))]
        self._remember_module_job(job)
        if not self.worker.store.has(self.vhost, code):
            try:
                self.worker.store.put(self.vhost, code, source.encode("utf-8"))
            except (StoreError, OSError) as exc:
                log.warning("vhost %s: module of job %s refused: %s", self.vhost, job, exc)
                return
        parked = self.waiting.pop(code, [])
        self.waiting_since.pop(code, None)
        if parked:
            self.pending.extend(d for d in parked if d.generation == self.generation)
            self.worker.enqueue(self)

    def expire_waiting(self, now: float) -> None:
        """Dead-letter the shards whose module never came (:data:`CODE_WAIT`)."""
        for code, since in list(self.waiting_since.items()):
            if now - since < CODE_WAIT:
                continue
            del self.waiting_since[code]
            for d in self.waiting.pop(code, []):
                if d.generation == self.generation:
                    reason = f"the job's module was not announced within {CODE_WAIT:g} s"
                    retry.dead_letter(self, d.tag, d.props, d.shard.body, reason, shard=d.shard)

    # -- routed jobs (``pimq run --pis``; docs/ARCHITECTURE.md, "Routing") --
    def _on_rollcall(self, job: str, reply_to: str) -> None:
        """Say who this Pi is, how busy, and which of the student's datasets it holds."""
        here = Here(
            self.worker_name,
            self.worker.pool.busy,
            self.worker.pool_size,
            tuple(self.data.digests()),
        )
        self.publish(topology.RESULTS, reply_to, encode_here(job, here), topology.RESULT_PROPS)

    def _on_route(self, job: str, queue: str, pis: tuple[str, ...]) -> None:
        if job in self.cancelled:
            return
        if self.worker_name not in pis:
            self._leave_route(job)  # re-routed away from this Pi (or never here)
            return
        known = job in self.routes
        self.routes[job] = (queue, time.monotonic())
        if not known:
            log.info("vhost %s: job %s routed here (%s)", self.vhost, job, ", ".join(pis))
            self._reconsume()

    def _leave_route(self, job: str) -> None:
        """Stop consuming a routed job's queue: consume the others (or
        pimq.tasks) again with the whole window once this one is settled."""
        if self.routes.pop(job, None) is not None:
            self._reconsume()

    def expire_routes(self, now: float) -> None:
        """Leave the routes whose controller stopped announcing them (:data:`ROUTE_LEASE`)."""
        for job, (_queue, seen) in list(self.routes.items()):
            if now - seen >= ROUTE_LEASE:
                log.info("vhost %s: job %s no longer routed here: leaving it", self.vhost, job)
                self._leave_route(job)

    def _on_control(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        announced = decode_code(body)
        if announced is not None:
            self._on_code(*announced)
            return
        rollcall = decode_rollcall(body)
        if rollcall is not None:
            self._on_rollcall(*rollcall)
            return
        route = decode_route(body)
        if route is not None:
            self._on_route(*route)
            return
        put = decode_data_put(body)
        if put is not None:
            self.data.on_put(put)
            return
        rm = decode_data_rm(body)
        if rm is not None:
            self.data.on_rm(*rm)
            return
        control = decode_control(body)
        if control is None:
            return
        job, reason = control
        self._leave_route(job)
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
        for code, parked in list(self.waiting.items()):
            dropped += [d.tag for d in parked if d.shard.job == job]
            self.waiting[code] = [d for d in parked if d.shard.job != job]
            if not self.waiting[code]:
                del self.waiting[code]
                self.waiting_since.pop(code, None)
        self.settle(self.generation, dropped, True)
        module = job in self.module_jobs
        stopped = self.worker.stop_job(self, job, reason, module)
        if reason != "done" or dropped or stopped:
            log.info(
                "vhost %s: job %s %s, dropped %d queued shard(s), stopped %d running",
                self.vhost,
                job,
                reason,
                len(dropped),
                stopped,
            )

    # -- outcome of a shard (on the I/O thread) --------------------------
    def _adapt_prefetch(self, seconds: float, size: int) -> None:
        """Quick shards need a deeper pipeline than slow ones (:mod:`pimq.worker.pacing`)."""
        self.pace.observe(seconds, size)
        wanted = self.worker.prefetch_for(self.pace)
        ch = self.channel
        if wanted != self.prefetch and ch is not None and ch.is_open and not self.worker.stopping:
            self.prefetch = wanted
            self._reconsume()  # consumes again once the old window is settled

    def finish(self, done: list[tuple[Delivery, ShardOutcome]]) -> None:
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
            elif not ok and tb.startswith(BROKER_DEADLINE):
                retry.dead_letter(self, d.tag, d.props, shard.body, tb, shard=shard)
            elif ok:
                self._adapt_prefetch(seconds, len(shard.body))
                batches.setdefault((shard.job, shard.reply_to), []).append((d, seconds, entry))
            else:
                self._adapt_prefetch(seconds, len(shard.body))
                retry.retry_or_dead_letter(
                    self, d.tag, d.generation, d.props, shard, tb, topology.task_key(d.queue)
                )
        for (job, reply_to), batch in batches.items():
            if self.worker.log_shards:
                self._log_batch(batch)
            results = [(d, entry) for d, _s, entry in batch]
            self._publish_results(self.generation, reply_to, job, results, 0)

    def _publish_results(
        self,
        generation: int,
        reply_to: str,
        job: str,
        results: list[tuple[Delivery, bytes]],
        tries: int,
    ) -> None:
        """Publish a batch of results (one message); the shards are acked once it
        is confirmed. A refused batch of several is split in two, each half sent
        at once: together they may only be over the result queue's byte cap,
        one by one they fit. A single refused result (the job's result queue at
        the room's cap) is tried again after a back-off, :data:`RESULT_TRIES`
        times in all; then its shard is dead-lettered with the reason: running
        it again would only make the same refused result (a requeue would loop)."""
        if generation != self.generation or self.channel is None:
            return  # the connection went: the broker redelivers them
        batch = [d for d, _entry in results]
        body = encode_results(job, self.worker_name, [entry for _d, entry in results])

        def confirmed(ok: bool) -> None:
            if ok:
                self.settle(generation, [d.tag for d in batch], True)
                self.worker.metrics.shard(self.vhost, metrics.DONE, len(batch))
            elif len(results) > 1:
                half = len(results) // 2
                for part in (results[:half], results[half:]):
                    self.worker.ioloop.call_later(
                        0,
                        lambda part=part: self._publish_results(
                            generation, reply_to, job, part, tries
                        ),
                    )
            elif tries + 1 < RESULT_TRIES:
                delay = min(0.5 * 2**tries, RESULT_RETRY_MAX)
                self.worker.ioloop.call_later(
                    delay,
                    lambda: self._publish_results(generation, reply_to, job, results, tries + 1),
                )
            elif generation == self.generation:
                reason = (
                    f"its result ({len(body)} bytes) was refused {RESULT_TRIES} times: the "
                    "job's result queue is at the room's cap (a result larger than the cap "
                    "never fits)"
                )
                for d in batch:
                    retry.dead_letter(self, d.tag, d.props, d.shard.body, reason, shard=d.shard)

        if not self.publish(topology.RESULTS, reply_to, body, topology.RESULT_PROPS, confirmed):
            return

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
