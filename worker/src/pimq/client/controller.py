"""The controller side of a job: publish shards, gather results, clean up.

Runs on one pika ``SelectConnection``: shards are published pipelined with
publisher confirms while results are consumed. If the connection is lost
(broker restart), it reconnects and re-publishes every shard not yet
confirmed or without a result (results are transient, so a restart may
lose some; shards are persistent). Exactly one result per shard index is
kept (redeliveries and re-publications produce duplicates).

A shard the broker refuses (a confirm nack: the vhost's ``pimq.tasks`` is at
the room's byte or length cap, ``overflow: reject-publish``) is back-pressure,
not loss: the controller keeps it, stops sending more, and tries again after
a back-off, one shard first and then twice as many after each accepted one
(so a full queue costs a probe, not the whole job's bytes, per try). When
nothing was accepted and no result came for :data:`QUEUE_WAIT` seconds, the
job stops with :class:`~pimq.errors.QueueFull`, naming what was not queued.
"""

from __future__ import annotations

import heapq
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions as px
from pika.adapters.select_connection import IOLoop

from pimq.client.progress import Progress
from pimq.client.route import PiChoice, Router
from pimq.client.withdraw import Withdrawal
from pimq.config import StudentConfig
from pimq.errors import (
    BrokerError,
    Interrupted,
    JobFailed,
    JobStopped,
    JobTimeout,
    PimqError,
    QueueFull,
    UsageError,
)
from pimq.protocol import amqp, topology
from pimq.protocol.link import Backoff, Link
from pimq.protocol.wire import (
    BadMessage,
    Result,
    decode_results,
    decode_stopped,
    encode_cancel,
    encode_code,
    shard_properties,
)

RECONNECT_WINDOW = 120.0
# Shards are framed and handed to the socket in slices: the broker reads one
# slice while the next is framed, and Ctrl-C is seen between slices.
SLICE_BYTES = 1 << 20
SLICE_SHARDS = 256
#: a student module is announced again this often while its job runs, for
#: workers that (re)connect after the first announcement
ANNOUNCE_EVERY = 5.0
#: seconds of refused shards, with nothing accepted and no result, before the
#: job stops (``--queue-wait``)
QUEUE_WAIT = 300.0
#: once refused, shards in flight grow from one, doubling per accepted shard;
#: past this many the controller publishes freely again
OPEN_WINDOW = 1024


def new_job_id() -> str:
    return secrets.token_hex(8)


def missing_list(missing: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in missing[:limit])
    return shown + (f", ... ({len(missing)} in all)" if len(missing) > limit else "")


@dataclass
class JobOutcome:
    job: str
    results: dict[int, Result]
    wall: float
    count: int
    per_worker: dict[str, int] = field(default_factory=dict)
    #: results dropped because their shard already had one (redeliveries after
    #: a worker or connection was lost): never counted twice, but worth knowing
    duplicates: int = 0
    #: shard publishes the broker refused (a full queue) and that went out again
    refused: int = 0

    @property
    def compute(self) -> float:
        return sum(r.seconds for r in self.results.values())

    @property
    def parallelism(self) -> float:
        """Shard compute time over wall time: how many shards ran at once on
        average. Not a speedup: a shard's own time swells while it waits for a
        core (three Pis sharing two cores show more than 2x), and nothing here
        was timed serially."""
        return self.compute / self.wall if self.wall > 0 else 0.0


class Controller(Link):
    """Run one job to completion; :meth:`run` returns a :class:`JobOutcome`."""

    connection_name = "pimq run"

    def __init__(
        self,
        cfg: StudentConfig,
        kind: str,
        params_json: str,
        make_bodies: Callable[[int], Sequence[bytes]],
        timeout: float | None = None,
        progress: bool = True,
        job: str | None = None,
        headers: dict[str, Any] | None = None,
        code: tuple[str, str, str] | None = None,
        queue_wait: float = QUEUE_WAIT,
        pis: PiChoice | None = None,
    ) -> None:
        super().__init__(IOLoop(), amqp.student_parameters(cfg, self.connection_name), cfg.where())
        self.cfg = cfg
        self.kind = kind
        self.params_json = params_json
        self.make_bodies = make_bodies
        self.timeout = timeout
        self.job = job or new_job_id()
        self.queue = topology.result_queue(self.job)
        self.bodies: Sequence[bytes] | None = None
        self.to_publish: Iterator[int] = iter(())
        self.results: dict[int, Result] = {}
        self.duplicates = 0
        self.confirmed: set[int] = set()
        self.ack_tag: int | None = None
        self.error: PimqError | None = None
        self.finishing = False
        self.connected_once = False
        self.lost_since: float | None = None
        self.backoff = Backoff(0.5, 8.0)
        self.interrupts = 0
        self.start = 0.0
        self.want_progress = progress
        self.progress: Progress | None = None
        self.headers = headers or {}
        #: (digest, file name, source) of a student module, announced once per
        #: job on ``pimq.control`` (and again every :data:`ANNOUNCE_EVERY` s)
        self.code = code
        self.announcing = False
        # back-pressure (see the module's docstring)
        self.queue_wait = queue_wait
        self.refused: list[int] = []  # a heap of shard indices to publish again
        self.refusals = 0
        self.largest_refused = 0
        self.inflight = 0  # shard publishes of this channel awaiting their confirm
        self.window: int | None = None  # at most this many in flight (None: no limit)
        self.pump_timer: Any = None
        self.pump_at = float("inf")
        self.full_timer: Any = None
        self.refuse_backoff = Backoff(0.1, 2.0)
        #: ``--pis``: the job's own queue and the Pis that take it (:mod:`pimq.client.route`)
        self.router = Router(self, pis) if pis is not None else None
        self.target = self.router.queue if self.router else topology.TASKS

    # -- public ------------------------------------------------------------
    def run(self) -> JobOutcome:
        self.start = time.monotonic()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self.connect()
            self.ioloop.call_later(0.1, self._tick)
            if self.timeout:
                self.ioloop.call_later(self.timeout, self._on_timeout)
            self.ioloop.start()
        finally:
            signal.signal(signal.SIGINT, previous)
            if self.progress:
                self.progress.clear()
            try:
                self.ioloop.close()
            except Exception:
                pass
        if self.error is not None:
            raise self.error
        wall = time.monotonic() - self.start
        count = len(self.bodies or [])
        per_worker = Counter(r.worker for r in self.results.values())
        return JobOutcome(
            self.job,
            self.results,
            wall,
            count,
            dict(per_worker),
            self.duplicates,
            self.refusals,
        )

    @property
    def count(self) -> int:
        return len(self.bodies) if self.bodies is not None else 0

    # -- connection (the life cycle is :class:`pimq.protocol.link.Link`'s) ----
    def on_down(self, why: str, was_open: bool) -> None:
        if self.finishing:
            self.ioloop.stop()
        elif not self.connected_once and not was_open:
            self._fail(BrokerError(why), stop_now=True)
        else:
            self._schedule_reconnect(why)

    def _schedule_reconnect(self, why: str) -> None:
        now = time.monotonic()
        if self.lost_since is None:
            self.lost_since = now
            self._say(f"pimq: {why}; reconnecting...")
        if now - self.lost_since > RECONNECT_WINDOW:
            self._fail(BrokerError(why), stop_now=True)
            return
        self.ioloop.call_later(self.backoff.next(), self.connect)

    def on_channel_closed(self, exc: BaseException) -> None:
        if isinstance(exc, px.ChannelClosedByBroker):
            self._fail(BrokerError(f"the broker refused: {exc.reply_text}"), stop_now=True)
        else:
            self.close()

    def on_ready(self, channel: Any) -> None:
        self._declare_results()

    def _declare_results(self) -> None:
        ch = self.channel
        ch.queue_declare(
            queue=self.queue, durable=True, arguments=topology.result_queue_arguments()
        )
        ch.queue_bind(queue=self.queue, exchange=topology.RESULTS, routing_key=self.queue)
        ch.basic_qos(prefetch_count=1000)
        ch.basic_consume(queue=self.queue, on_message_callback=self._on_result)
        ch.queue_declare(queue=topology.TASKS, durable=True, callback=self._on_tasks_declared)

    def _on_tasks_declared(self, frame: Any) -> None:
        router = self.router
        if router is not None and not router.ready_on(self.channel):
            consumers = frame.method.consumer_count
            router.prepare(self.channel, consumers, lambda: self._on_tasks_declared(frame))
            return
        if self.lost_since is not None:
            self._say("pimq: reconnected")
        self.lost_since = None
        self.backoff.reset()
        if self.bodies is not None:
            # Results are transient (fast confirms): a broker restart may have
            # lost some, so every shard without a result goes out again.
            self.confirmed.clear()
        else:
            self.connected_once = True
            consumers = len(router.pis) if router else frame.method.consumer_count
            self.bodies = self.make_bodies(consumers)
            if self.want_progress:
                self.progress = Progress(self.count)
            self._say(f"pimq: job {self.job}: {self.count} shard(s) of {self.kind} queued")
            if router is not None:
                self._say(f"pimq: on {', '.join(router.pis)} ({topology.JOB_PREFIX}{self.job})")
            elif frame.method.consumer_count == 0:
                self._say(
                    f"pimq: no worker is serving vhost {self.cfg.vhost!r} yet; "
                    "shards wait in pimq.tasks"
                )
        self._announce()
        self._publish_missing()

    def _announce(self) -> None:
        """Publish the student module (before its shards, which carry only its
        digest); workers keep it in their store and run the shards once it is there."""
        if self.code is None or self.finishing:
            return
        ch = self.channel
        if ch is not None and ch.is_open:
            digest, filename, source = self.code
            body = encode_code(self.job, digest, filename, source)
            self.publish(topology.CONTROL, "", body, topology.CONTROL_PROPS)
        if not self.announcing:
            self.announcing = True
            self.ioloop.call_later(ANNOUNCE_EVERY, self._announce_again)

    def _announce_again(self) -> None:
        self.announcing = False
        self._announce()

    # -- publishing ----------------------------------------------------------
    def _publish_missing(self) -> None:
        """(Re-)publish every shard that is neither confirmed nor answered."""
        if not self.bodies:
            self._finish()
            return
        self.to_publish = iter(range(len(self.bodies)))
        self.refused.clear()
        self.inflight = 0
        self._pump(self.channel)

    def _pump_soon(self, delay: float) -> None:
        """Publish what is due after ``delay`` s (an earlier pump wins)."""
        now = time.monotonic()
        if self.pump_timer is not None:
            if self.pump_at <= now + delay:
                return
            self.ioloop.remove_timeout(self.pump_timer)
        ch = self.channel

        def due() -> None:
            self.pump_timer, self.pump_at = None, float("inf")
            self._pump(ch)

        self.pump_at = now + delay
        self.pump_timer = self.ioloop.call_later(delay, due)

    def _pump(self, ch: Any) -> None:
        """Publish refused shards first, then the rest, while the window allows,
        a slice at a time."""
        if self.pump_timer is not None:
            self.ioloop.remove_timeout(self.pump_timer)
        self.pump_timer, self.pump_at = None, float("inf")
        if ch is not self.channel or self.finishing or ch is None or not ch.is_open:
            return  # a new channel started its own pass, or the job is over
        size, count = 0, 0
        while self.window is None or self.inflight < self.window:
            index = self._next_index()
            if index is None:
                return
            body = self._body(index)
            if body is None:
                return
            self._publish(ch, index, body)
            size, count = size + len(body), count + 1
            if size >= SLICE_BYTES or count >= SLICE_SHARDS:
                self._pump_soon(0)
                return

    def _next_index(self) -> int | None:
        done = self.confirmed, self.results
        while self.refused:
            index = heapq.heappop(self.refused)
            if index not in done[0] and index not in done[1]:
                return index
        for index in self.to_publish:
            if index not in done[0] and index not in done[1]:
                return index
        return None

    def _on_shard_confirm(self, index: int, ok: bool, size: int) -> None:
        self.inflight -= 1
        if ok:
            self.confirmed.add(index)
            self._progressed()
            if self.window is not None:
                self.window *= 2
                if self.window > OPEN_WINDOW:
                    self.window = None
            self.refuse_backoff.reset()
            if self.refused or self.window is not None:
                self._pump_soon(0)
            return
        if self.finishing:
            return
        # refused (the queue is at its cap): keep it, send less, try again later
        heapq.heappush(self.refused, index)
        self.refusals += 1
        self.largest_refused = max(self.largest_refused, size)
        self.window = 1
        if self.full_timer is None:
            self.full_timer = self.ioloop.call_later(self.queue_wait, self._on_queue_full)
        if self.inflight <= 0:
            self._pump_soon(self.refuse_backoff.next())

    def _progressed(self) -> None:
        """A shard was accepted or a result came: the wait for room starts over."""
        if self.full_timer is not None:
            self.ioloop.remove_timeout(self.full_timer)
            self.full_timer = None

    def _on_queue_full(self) -> None:
        self.full_timer = None
        if self.finishing or not self.refused:
            return
        waiting = sorted(set(self.refused))
        self._fail(
            QueueFull(
                f"the broker refused shards of job {self.job} for {self.queue_wait:g} s: "
                f"{topology.TASKS} in vhost {self.cfg.vhost!r} is at the room's cap and "
                f"nothing was taken from it meanwhile; {len(waiting)} of {self.count} "
                f"shard(s) not queued: {missing_list(waiting)}. The largest refused shard "
                f"has {self.largest_refused} bytes: if that is more than the cap it can "
                "never fit (use more --shards); else wait for your other jobs, or purge "
                "what you no longer need"
            )
        )

    def _body(self, index: int) -> bytes | None:
        """Shard ``index``'s body (read from disk for file inputs), or None
        after failing the job if it can no longer be read."""
        assert self.bodies is not None
        try:
            return self.bodies[index]
        except ValueError as exc:
            self._fail(UsageError(str(exc)))
        except OSError as exc:
            self._fail(UsageError(f"cannot read shard {index} of the input: {exc.strerror}"))
        return None

    def _publish(self, ch: Any, index: int, body: bytes) -> None:
        headers = self.headers
        ranges = getattr(self.bodies, "headers_for", None)  # a dataset on the Pis
        if ranges is not None:
            headers = {**headers, **ranges(index)}
        props = shard_properties(
            self.job, index, self.count, self.kind, self.params_json, self.queue, 0, headers
        )
        ch.basic_publish(topology.TASKS, topology.task_key(self.target), body, props)
        self.inflight += 1
        size = len(body)
        self.confirms.published(lambda ok, i=index: self._on_shard_confirm(i, ok, size))

    # -- gathering -----------------------------------------------------------
    def _on_result(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._ack_later(ch, method.delivery_tag)
        if self.finishing or (self.router is not None and self.router.on_result(body)):
            return
        stopped = decode_stopped(body)
        if stopped is not None:
            if stopped[0] == self.job:  # the teacher stopped it (make stop-job)
                self._fail(JobStopped(f"job {self.job} was stopped by the {stopped[1]}"))
            return
        try:
            batch = decode_results(body)
        except BadMessage:
            return
        results, count = self.results, self.count
        for result in batch:
            if result.job != self.job or not 0 <= result.index < count:
                continue
            if not result.ok and result.missing and hasattr(self.bodies, "send_bytes"):
                self._send_bytes(result.index)
                continue
            if not result.ok:
                lines = result.traceback.rstrip().splitlines()
                if lines and lines[-1] in result.error:  # the summary, already said
                    lines.pop()
                tb = "".join(f"\n{line}" for line in lines)
                self._fail(
                    JobFailed(
                        f"shard {result.index} of job {self.job} failed on {result.worker}: "
                        f"{result.error} (details in queue pimq.dead){tb}"
                    )
                )
                return
            if result.index in results:
                self.duplicates += 1
                continue
            results[result.index] = result
            self._progressed()
        if self.progress:
            self.progress.update(len(results))
        if len(results) == count:
            self._finish()

    def _send_bytes(self, index: int) -> None:
        """The Pi lacked the shard's dataset: the shard goes again with its bytes."""
        self.bodies.send_bytes(index)  # type: ignore[union-attr]
        self.confirmed.discard(index)
        body = self._body(index)
        if body is not None and self.channel is not None and self.channel.is_open:
            self._publish(self.channel, index, body)

    def _ack_later(self, ch: Any, tag: int) -> None:
        """One ``multiple`` ack for all results read in one I/O round."""
        if self.ack_tag is None:
            self.ioloop.call_later(0, lambda: self._flush_acks(ch))
        self.ack_tag = tag

    def _flush_acks(self, ch: Any) -> None:
        tag, self.ack_tag = self.ack_tag, None
        if tag is not None and ch is self.channel and ch.is_open:
            ch.basic_ack(tag, multiple=True)

    # -- ending --------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.progress:
            self.progress.message(text)
        else:
            import sys

            print(text, file=sys.stderr, flush=True)

    def _on_sigint(self, _signum: int, _frame: Any) -> None:
        self.interrupts += 1

    def _tick(self) -> None:
        if self.interrupts and self.error is None:
            self._fail(Interrupted(f"interrupted: job {self.job} cancelled"))
        elif self.interrupts > 1:
            self.ioloop.stop()
            return
        self.ioloop.call_later(0.1, self._tick)

    def _on_timeout(self) -> None:
        if self.finishing:
            return
        missing = [i for i in range(self.count) if i not in self.results]
        if self.bodies is None:
            text = f"timed out after {self.timeout:g} s before the job could start"
        else:
            text = (
                f"timed out after {self.timeout:g} s: {len(missing)} of {self.count} "
                f"shard(s) missing: {missing_list(missing)}"
            )
        self._fail(JobTimeout(text))

    def _fail(self, error: PimqError, stop_now: bool = False) -> None:
        if self.error is None:
            self.error = error
        if stop_now or self.channel is None or not self.channel.is_open:
            self.finishing = True
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
            else:
                self.ioloop.stop()
            return
        self._cleanup(cancel=True)

    def _finish(self) -> None:
        self._cleanup(cancel=False)

    def _cleanup(self, cancel: bool) -> None:
        if self.finishing:
            return
        self.finishing = True
        ch = self.channel
        # Tell the workers the job is over: they drop whatever of it is left
        # (the rest of a cancelled job, or duplicates after a reconnect).
        reason = "cancelled" if cancel else "done"
        self.publish(topology.CONTROL, "", encode_cancel(self.job, reason), topology.CONTROL_PROPS)
        if cancel and self.router is None:  # once every shard published is in the queue, look
            self.confirms.when_drained(
                lambda: ch.queue_declare(
                    queue=topology.TASKS, passive=True, callback=self._on_tasks_looked
                )
            )
        else:
            self._close(ch)

    def _on_tasks_looked(self, frame: Any) -> None:
        """Cancelled: with no worker serving the vhost, nobody would drop the
        job's shards, so take them back (:mod:`pimq.client.withdraw`)."""
        ch, m = self.channel, frame.method
        if m.consumer_count or not m.message_count:
            self._close(ch)
            return

        def done(taken: int) -> None:
            self._say(
                f"pimq: no worker is serving vhost {self.cfg.vhost!r}: took {taken} shard(s) "
                f"of job {self.job} back out of {topology.TASKS}"
            )
            self._close(ch)

        Withdrawal(self.conn, self.ioloop, self.job, m.message_count, done).start()

    def _close(self, ch: Any) -> None:
        if ch is not None and ch.is_open and self.router is not None and self.error is not None:
            # a routed job's shards left over; the queue itself expires unused
            # (deleted now, it could close the channel of a Pi consuming it again)
            ch.queue_purge(queue=self.router.queue)
        if ch is not None and ch.is_open:
            ch.queue_delete(queue=self.queue, callback=lambda _f: self.conn.close())
        elif self.conn is not None and self.conn.is_open:
            self.conn.close()
