"""An in-process stand-in for RabbitMQ, pika's SelectConnection and its IOLoop.

For fast tests of the worker's and the controller's logic (scheduling across
vhosts, batching, ack coalescing, retry and dead-lettering, one result per
shard) and of the cases a real broker rarely produces on demand: a confirm
nack, a channel closed between a publish and its ack, a redelivery after the
result was already counted. dramatiq's StubBroker is the model. The
real-broker integration tests stay: this adds coverage, it replaces nothing.

What it models, as RabbitMQ does for one node: vhosts with direct and fanout
exchanges, durable and exclusive queues, consumers served round-robin within
their prefetch (per-consumer ``basic.qos``, fixed when a consumer starts;
``global`` QoS is refused, as RabbitMQ 4 does when that deprecated feature is
denied), manual and automatic acks,
``multiple`` acks and nacks with requeue (a requeued message goes back to the
head of its queue, marked redelivered), publisher confirms, and a channel or
connection that closes: its unacked messages go back to their queues.
Queue caps as the room's policies set them (:attr:`FakeBroker.max_bytes`):
``max-length-bytes`` over the ready messages with ``overflow: reject-publish``,
a publish that would go over is nacked and not routed.

Time is virtual: :class:`FakeIOLoop` runs callbacks in the order of their due
times without sleeping, so a test of a 30 s back-off takes microseconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika.exceptions as px
from pika.spec import Basic


class FakeIOLoop:
    """pika's IOLoop interface (``call_later``, ``remove_timeout``, ``start``,
    ``stop``) over a virtual clock."""

    def __init__(self, limit: float = 3600.0) -> None:
        self.now = 0.0
        self.limit = limit  # virtual seconds after which start() fails the test
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._stopped = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        handle = next(self._seq)
        heapq.heappush(self._heap, (self.now + max(0.0, delay), handle, callback))
        return handle

    def remove_timeout(self, handle: int) -> None:
        self._cancelled.add(handle)

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        pass

    def start(self) -> None:
        """Run until :meth:`stop`; fail if the virtual clock passes ``limit``."""
        self._stopped = False
        self.run(lambda: self._stopped)

    def run(self, until: Callable[[], bool], seconds: float | None = None) -> None:
        """Run callbacks until ``until()`` is true (checked after each one), or
        for ``seconds`` of virtual time if given (then ``until`` may stay false)."""
        end = self.now + seconds if seconds is not None else self.limit
        while not until():
            if not self._heap:
                raise AssertionError("nothing left to run and the condition is still false")
            due, handle, callback = self._heap[0]
            if due > end:
                if seconds is not None:
                    self.now = end
                    return
                raise AssertionError(f"still not done after {self.limit:g} virtual seconds")
            heapq.heappop(self._heap)
            if handle in self._cancelled:
                self._cancelled.discard(handle)
                continue
            self.now = due
            callback()


@dataclass
class Message:
    exchange: str
    routing_key: str
    body: bytes
    properties: Any
    redelivered: bool = False


@dataclass
class Queue:
    name: str
    durable: bool = False
    exclusive_to: FakeChannel | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    messages: deque[Message] = field(default_factory=deque)
    consumers: list[Consumer] = field(default_factory=list)
    turn: int = 0  # round-robin position among consumers


@dataclass(eq=False)
class Consumer:
    tag: str
    channel: FakeChannel
    queue: Queue
    callback: Callable[..., None]
    auto_ack: bool
    prefetch: int = 0
    unacked: int = 0

    def has_room(self) -> bool:
        return not self.prefetch or self.unacked < self.prefetch


class Vhost:
    def __init__(self, name: str) -> None:
        self.name = name
        self.exchanges: dict[str, str] = {"": "direct"}
        self.bindings: dict[str, list[tuple[str, str]]] = {}  # exchange -> (queue, key)
        self.queues: dict[str, Queue] = {}


class FakeBroker:
    """The broker. ``users`` maps user name to (password, set of vhosts)."""

    def __init__(self, users: dict[str, tuple[str, set[str]]]) -> None:
        self.users = users
        self.vhosts: dict[str, Vhost] = {}
        for _password, vhosts in users.values():
            for v in vhosts:
                self.vhosts.setdefault(v, Vhost(v))
        self.connections: list[FakeConnection] = []
        #: decides each publish: (channel, exchange, routing key, body) -> ack? A
        #: refused (nacked) message is not routed. A rule may also break things
        #: (close the channel, drop the connection) to test what follows.
        self.confirm_rule: Callable[[FakeChannel, str, str, bytes], bool] = lambda *_: True
        #: queue name -> max-length-bytes with reject-publish (in every vhost)
        self.max_bytes: dict[str, int] = {}
        self.refused: list[tuple[str, Message]] = []  # (vhost, message) refused by a cap
        self.published: list[tuple[str, Message]] = []  # (vhost, message), every publish
        self.acks: list[tuple[int, bool]] = []  # (delivery tag, multiple), every basic.ack

    # -- inspection -------------------------------------------------------
    def queue(self, vhost: str, name: str) -> Queue:
        return self.vhosts[vhost].queues[name]

    def depth(self, vhost: str, name: str) -> int:
        q = self.vhosts[vhost].queues.get(name)
        return len(q.messages) if q else 0

    def declare(self, vhost: str, queue: str, exchange: str = "", key: str = "") -> Queue:
        """A durable queue, bound to ``exchange`` with ``key`` if one is named."""
        v = self.vhosts[vhost]
        q = v.queues.setdefault(queue, Queue(queue, durable=True))
        if exchange:
            v.bindings.setdefault(exchange, []).append((queue, key))
        return q

    def channels(self, user: str, vhost: str) -> list[FakeChannel]:
        """The open channels of ``user`` in ``vhost``."""
        return [
            ch
            for conn in self.connections
            if conn.user == user and conn.vhost_name == vhost
            for ch in conn.channels
            if ch.is_open
        ]

    def put(self, vhost: str, exchange: str, routing_key: str, body: bytes, props: Any) -> None:
        """Publish as some other client would."""
        self._route(self.vhosts[vhost], Message(exchange, routing_key, body, props))

    def ready_bytes(self, vhost: str, name: str) -> int:
        q = self.vhosts[vhost].queues.get(name)
        return sum(len(m.body) for m in q.messages) if q else 0

    # -- routing and delivery -----------------------------------------------
    def _targets(self, vhost: Vhost, msg: Message) -> list[str]:
        kind = vhost.exchanges.get(msg.exchange)
        if kind is None:
            raise KeyError(f"no exchange {msg.exchange!r} in vhost {vhost.name!r}")
        if msg.exchange == "":
            targets = [msg.routing_key]
        else:
            targets = [
                q
                for q, key in vhost.bindings.get(msg.exchange, [])
                if kind == "fanout" or key == msg.routing_key
            ]
        return list(dict.fromkeys(targets))

    def over_cap(self, vhost: Vhost, msg: Message) -> bool:
        """Whether a queue the message goes to would pass its byte cap."""
        for name in self._targets(vhost, msg):
            cap = self.max_bytes.get(name)
            full = cap is not None and self.ready_bytes(vhost.name, name) + len(msg.body) > cap
            if full and name in vhost.queues:
                return True
        return False

    def _route(self, vhost: Vhost, msg: Message) -> None:
        for name in self._targets(vhost, msg):
            queue = vhost.queues.get(name)
            if queue is not None:
                queue.messages.append(Message(**vars(msg)))
                self._dispatch(queue)

    def _dispatch(self, queue: Queue) -> None:
        while queue.messages and queue.consumers:
            ready = [c for c in queue.consumers if c.auto_ack or c.has_room()]
            if not ready:
                return
            consumer = ready[queue.turn % len(ready)]
            queue.turn += 1
            consumer.channel.deliver(consumer, queue.messages.popleft())

    def requeue(self, queue: Queue, msgs: list[Message]) -> None:
        for msg in reversed(msgs):
            msg.redelivered = True
            queue.messages.appendleft(msg)
        self._dispatch(queue)


class FakeConnection:
    """``pika.SelectConnection(parameters, on_open_callback,
    on_open_error_callback, on_close_callback, custom_ioloop)``."""

    broker: FakeBroker  # set by :func:`install`

    def __init__(
        self,
        parameters: Any,
        on_open_callback: Callable[[Any], None],
        on_open_error_callback: Callable[[Any, BaseException], None],
        on_close_callback: Callable[[Any, BaseException], None],
        custom_ioloop: FakeIOLoop,
    ) -> None:
        self.ioloop = custom_ioloop
        self.vhost_name = parameters.virtual_host
        self.on_close_callback = on_close_callback
        self.channels: list[FakeChannel] = []
        self.is_open = False
        self.is_closed = False
        self.user = user = parameters.credentials.username
        password = parameters.credentials.password
        known = self.broker.users.get(user)
        if known is None or known[0] != password:
            error: BaseException | None = px.ProbableAuthenticationError("ACCESS_REFUSED")
        elif self.vhost_name not in known[1]:
            error = px.ProbableAccessDeniedError("NOT_ALLOWED")
        else:
            error = None
        if error is not None:
            self.is_closed = True
            self.ioloop.call_later(0, lambda: on_open_error_callback(self, error))
            return
        self.broker.connections.append(self)
        self.vhost = self.broker.vhosts[self.vhost_name]

        def opened() -> None:
            self.is_open = True
            on_open_callback(self)

        self.ioloop.call_later(0, opened)

    def channel(self, on_open_callback: Callable[[Any], None]) -> FakeChannel:
        ch = FakeChannel(self, len(self.channels) + 1)
        self.channels.append(ch)
        self.ioloop.call_later(0, lambda: on_open_callback(ch))
        return ch

    def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        self.ioloop.call_later(0, lambda: self._closed(px.ConnectionClosedByClient(200, "Normal")))

    def drop(self, reason: str = "connection reset") -> None:
        """The network or the broker went away under this connection."""
        if self.is_closed:
            return
        self.is_open = False
        self._closed(px.StreamLostError(reason))

    def _closed(self, exc: BaseException) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        for ch in list(self.channels):
            ch.closed(px.ChannelWrongStateError("connection closed"), notify=True)
        if self in self.broker.connections:
            self.broker.connections.remove(self)
        self.on_close_callback(self, exc)


class FakeChannel:
    """The channel methods pimq uses, with RabbitMQ's semantics."""

    def __init__(self, conn: FakeConnection, number: int) -> None:
        self.conn = conn
        self.broker = conn.broker
        self.vhost = conn.vhost
        self.number = number
        self.is_open = True
        self.on_close: list[Callable[[Any, BaseException], None]] = []
        self.on_confirm: Callable[[Any], None] | None = None
        self.publish_seq = 0
        self.delivery_seq = 0
        self.unacked: dict[int, tuple[Queue, Message, Consumer]] = {}
        self.prefetch = 0  # for the next consumer to start
        #: (prefetch, deliveries the client holds unacked) at every manual-ack consume
        self.consumed: list[tuple[int, int]] = []
        self.arrived: set[int] = set()  # unacked deliveries handed to a consumer callback
        self.consumers: dict[str, Consumer] = {}
        self._tags = itertools.count(1)

    # -- helpers -----------------------------------------------------------
    def _later(self, callback: Callable[..., None] | None, method: Any = None) -> None:
        if callback is not None:
            frame = SimpleNamespace(method=method)
            self.conn.ioloop.call_later(0, lambda: callback(frame))

    def _check(self) -> None:
        if not self.is_open:
            raise px.ChannelWrongStateError("channel is closed")

    def deliver(self, consumer: Consumer, msg: Message) -> None:
        self.delivery_seq += 1
        tag = self.delivery_seq
        if not consumer.auto_ack:
            self.unacked[tag] = (consumer.queue, msg, consumer)
            consumer.unacked += 1
        method = SimpleNamespace(
            delivery_tag=tag,
            redelivered=msg.redelivered,
            exchange=msg.exchange,
            routing_key=msg.routing_key,
            consumer_tag=consumer.tag,
        )

        def arrive() -> None:
            if not self.is_open:
                return
            if consumer.tag not in self.consumers:
                # cancelled meanwhile: pika rejects such a delivery (requeued)
                if not consumer.auto_ack:
                    self.basic_nack(tag, requeue=True)
                return
            if not consumer.auto_ack:
                self.arrived.add(tag)
            consumer.callback(self, method, msg.properties, msg.body)

        self.conn.ioloop.call_later(0, arrive)

    def closed(self, exc: BaseException, notify: bool) -> None:
        """The channel is gone: its unacked messages go back to their queues."""
        if not self.is_open:
            return
        self.is_open = False
        back: dict[str, tuple[Queue, list[Message]]] = {}
        for _tag, (queue, msg, _c) in sorted(self.unacked.items()):
            back.setdefault(queue.name, (queue, []))[1].append(msg)
        self.unacked.clear()
        self.arrived.clear()
        for consumer in self.consumers.values():
            consumer.queue.consumers.remove(consumer)
        self.consumers.clear()
        for name, queue in list(self.vhost.queues.items()):
            if queue.exclusive_to is self:
                del self.vhost.queues[name]
        for queue, msgs in back.values():
            self.broker.requeue(queue, msgs)
        if notify:
            for callback in self.on_close:
                callback(self, exc)

    def fail(self, code: int = 406, text: str = "PRECONDITION_FAILED") -> None:
        """The broker closes this channel (as on an error)."""
        self.closed(px.ChannelClosedByBroker(code, text), notify=True)

    # -- pika's Channel API ------------------------------------------------
    def add_on_close_callback(self, callback: Callable[[Any, BaseException], None]) -> None:
        self.on_close.append(callback)

    def confirm_delivery(self, ack_nack_callback: Callable[[Any], None]) -> None:
        self.on_confirm = ack_nack_callback

    def exchange_declare(
        self,
        exchange: str,
        exchange_type: str = "direct",
        passive: bool = False,
        durable: bool = False,
        callback: Callable[..., None] | None = None,
        **_: Any,
    ) -> None:
        self._check()
        if passive and exchange not in self.vhost.exchanges:
            self.fail(404, f"NOT_FOUND - no exchange '{exchange}'")
            return
        self.vhost.exchanges.setdefault(exchange, exchange_type)
        self._later(callback, SimpleNamespace())

    def queue_declare(
        self,
        queue: str,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        callback: Callable[..., None] | None = None,
    ) -> None:
        self._check()
        q = self.vhost.queues.get(queue)
        if q is None:
            if passive:
                self.fail(404, f"NOT_FOUND - no queue '{queue}'")
                return
            q = Queue(queue, durable, self if exclusive else None, dict(arguments or {}))
            self.vhost.queues[queue] = q
        method = SimpleNamespace(
            queue=queue, message_count=len(q.messages), consumer_count=len(q.consumers)
        )
        self._later(callback, method)

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str | None = None,
        callback: Callable[..., None] | None = None,
        **_: Any,
    ) -> None:
        self._check()
        binding = (queue, routing_key if routing_key is not None else queue)
        targets = self.vhost.bindings.setdefault(exchange, [])
        if binding not in targets:
            targets.append(binding)
        self._later(callback, SimpleNamespace())

    def queue_delete(self, queue: str, callback: Callable[..., None] | None = None) -> None:
        self._check()
        q = self.vhost.queues.pop(queue, None)
        for targets in self.vhost.bindings.values():
            targets[:] = [b for b in targets if b[0] != queue]
        count = len(q.messages) if q else 0
        self._later(callback, SimpleNamespace(message_count=count))

    def queue_purge(self, queue: str, callback: Callable[..., None] | None = None) -> None:
        self._check()
        q = self.vhost.queues.get(queue)
        if q is None:
            self.fail(404, f"NOT_FOUND - no queue '{queue}'")
            return
        count = len(q.messages)
        q.messages.clear()
        self._later(callback, SimpleNamespace(message_count=count))

    def basic_qos(self, prefetch_count: int = 0, global_qos: bool = False, **_: Any) -> None:
        self._check()
        if global_qos:
            self.fail(540, "NOT_IMPLEMENTED - the deprecated feature global_qos is denied")
            return
        self.prefetch = prefetch_count

    def basic_consume(
        self,
        queue: str,
        on_message_callback: Callable[..., None],
        auto_ack: bool = False,
        callback: Callable[..., None] | None = None,
        **_: Any,
    ) -> str:
        self._check()
        q = self.vhost.queues.get(queue)
        if q is None:
            self.fail(404, f"NOT_FOUND - no queue '{queue}'")
            return ""
        tag = f"ctag{self.number}.{next(self._tags)}"
        consumer = Consumer(tag, self, q, on_message_callback, auto_ack, self.prefetch)
        if not auto_ack:
            self.consumed.append((self.prefetch, len(self.arrived)))
        self.consumers[tag] = consumer
        q.consumers.append(consumer)
        self._later(callback, SimpleNamespace(consumer_tag=tag))
        self.conn.ioloop.call_later(0, lambda: self.broker._dispatch(q))
        return tag

    def basic_cancel(self, consumer_tag: str, callback: Callable[..., None] | None = None) -> None:
        consumer = self.consumers.pop(consumer_tag, None)
        if consumer is not None:
            consumer.queue.consumers.remove(consumer)
        self._later(callback, SimpleNamespace())

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        self._check()
        msg = Message(exchange, routing_key, body, properties)
        self.broker.published.append((self.vhost.name, msg))
        ok = self.broker.confirm_rule(self, exchange, routing_key, body)
        if ok and self.broker.over_cap(self.vhost, msg):
            ok = False
            self.broker.refused.append((self.vhost.name, msg))
        if ok:
            self.broker._route(self.vhost, msg)
        if self.on_confirm is not None:
            self.publish_seq += 1
            frame_method = (Basic.Ack if ok else Basic.Nack)(delivery_tag=self.publish_seq)
            on_confirm = self.on_confirm
            self.conn.ioloop.call_later(
                0, lambda: self.is_open and on_confirm(SimpleNamespace(method=frame_method))
            )

    def _settle(self, tag: int, multiple: bool) -> list[tuple[Queue, Message]]:
        if tag not in self.unacked and not (multiple and tag == 0):
            self.fail(406, f"PRECONDITION_FAILED - unknown delivery tag {tag}")
            return []
        tags = [t for t in sorted(self.unacked) if t <= tag] if multiple else [tag]
        settled = []
        for t in tags:
            queue, msg, consumer = self.unacked.pop(t)
            self.arrived.discard(t)
            consumer.unacked -= 1
            settled.append((queue, msg))
        return settled

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        self._check()
        self.broker.acks.append((delivery_tag, multiple))
        settled = self._settle(delivery_tag, multiple)
        for queue in {id(q): q for q, _m in settled}.values():
            self.broker._dispatch(queue)

    def basic_nack(
        self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True
    ) -> None:
        self._check()
        settled = self._settle(delivery_tag, multiple)
        if requeue:
            by_queue: dict[int, tuple[Queue, list[Message]]] = {}
            for q, m in settled:
                by_queue.setdefault(id(q), (q, []))[1].append(m)
            for q, msgs in by_queue.values():
                self.broker.requeue(q, msgs)

    def close(self) -> None:
        self.closed(px.ChannelClosedByClient(200, "Normal"), notify=True)


def install(monkeypatch: Any, broker: FakeBroker, loop: FakeIOLoop) -> None:
    """Point pimq's links at ``broker`` and every IOLoop at ``loop``."""
    import pimq.client.controller
    import pimq.protocol.link
    import pimq.worker.daemon

    FakeConnection.broker = broker
    monkeypatch.setattr(pimq.protocol.link.pika, "SelectConnection", FakeConnection)
    monkeypatch.setattr(pimq.client.controller, "IOLoop", lambda: loop)
    monkeypatch.setattr(pimq.worker.daemon, "IOLoop", lambda: loop)
    monkeypatch.setattr(pimq.worker.daemon, "ShardPool", InlinePool)


class InlinePool:
    """:class:`pimq.worker.pool.ShardPool`'s interface, running each batch in
    this process (:func:`pimq.worker.execute.execute`, the real shard code)
    after ``seconds_per_shard`` of virtual time. ``order`` records the
    (vhost, job, index) of every shard in the order it started."""

    seconds_per_shard = 0.001

    def __init__(self, size: int, ioloop: FakeIOLoop, on_results: Callable[..., None]) -> None:
        from pimq.worker.execute import execute

        self.size = size
        self.ioloop = ioloop
        self.on_results = on_results
        self.execute = execute
        self.busy = 0
        self.order: list[tuple[str, str, int]] = []
        self.batches: list[int] = []  # size of every batch submitted
        self.batch_vhosts: list[set[str]] = []  # whose shards every batch held
        self.caps: list[float] = []  # the consumer_timeout deadline of every batch
        self.held: list[Any] = []  # tokens submitted and not done yet
        self.batches_running: list[list[Any]] = []  # [tokens, timer, started]
        #: (vhost, job, index) of every shard preempted (given back unfinished)
        self.preempted: list[tuple[str, str, int]] = []

    def start(self) -> None:
        pass

    def has_idle(self) -> bool:
        return self.busy < self.size

    @property
    def idle_count(self) -> int:
        return self.size - self.busy

    def submit(
        self,
        tokens: list[Any],
        tasks: list[tuple],
        limit: float = 0.0,
        cap: float = float("inf"),
        cap_reason: str = "",
    ) -> None:
        self.busy += 1
        self.batches.append(len(tasks))
        self.batch_vhosts.append({d.link.vhost for d in tokens})
        self.caps.append(cap)
        self.order.extend((d.link.vhost, d.shard.job, d.shard.index) for d in tokens)
        # each outcome takes its virtual time (what the worker's fair share counts)
        outcomes = [(o[0], self.seconds_for(t), *o[2:]) for t, o in self._runs(tasks)]
        self.held.extend(tokens)
        record: list[Any] = [tokens, None, self.ioloop.now]

        def done() -> None:
            self.busy -= 1
            self.batches_running.remove(record)
            for t in tokens:
                self.held.remove(t)
            self.on_results(tokens, outcomes)

        seconds = sum(self.seconds_for(t) for t in tasks)
        record[1] = self.ioloop.call_later(seconds, done)
        self.batches_running.append(record)

    def _runs(self, tasks: list[tuple]) -> list[tuple[tuple, Any]]:
        return [(t, self.execute(*t)) for t in tasks]

    def seconds_for(self, task: tuple) -> float:
        """Virtual seconds a task takes: ``seconds_per_shard``, or for the
        ``nap`` kind one per byte of its body (it returns at once)."""
        if task[0] == "nap":
            return float(len(task[1]))
        return self.seconds_per_shard

    def running(self) -> list[Any]:
        return list(self.held)

    def running_batches(self) -> list[list[Any]]:
        return [list(r[0]) for r in self.batches_running]

    def preempt(self, wanted: Callable[[Any], bool]) -> list[Any]:
        hit = [r for r in self.batches_running if all(map(wanted, r[0]))]
        if not hit:
            return []
        record = max(hit, key=lambda r: r[2])
        self.ioloop.remove_timeout(record[1])
        self.batches_running.remove(record)
        self.busy -= 1
        for t in record[0]:
            self.held.remove(t)
        self.preempted.extend((d.link.vhost, d.shard.job, d.shard.index) for d in record[0])
        return list(record[0])

    def expire(self, now: float | None = None) -> int:
        return 0  # each batch has run by the time it is submitted

    def stop_where(self, wanted: Callable[[Any], bool], reason: str) -> int:
        return 0

    def tell_all(self, message: tuple) -> None:
        from pimq.worker.execute import end_sandboxes

        end_sandboxes(message[1], message[2])

    def shutdown(self, force: bool = False) -> None:
        pass


# -- a small room for the tests: two student vhosts, a worker, job kinds -----
WORKER = ("pimq-worker", "worker-pw")
KINDS = {
    "boom": "def split(a, p, n): return [b'x']\n"
    "def run(body, params): raise ValueError('bad shard ' + body.decode())\n"
    "def join(r, p): return r\n",
    "size": "def split(a, p, n): return [b'']\n"
    "def run(body, params): return len(body)\n"
    "def join(r, p): return sum(r)\n",
    "nap": "def split(a, p, n): return [b'x']\n"
    "def run(body, params): return len(body)\n"
    "def join(r, p): return sum(r)\n",
    "square": "def split(a, p, n): return [str(i).encode() for i in range(n)]\n"
    "def run(body, params): return int(body) ** 2\n"
    "def join(r, p): return sum(r)\n",
}


@dataclass
class Room:
    """A broker with vhosts s1 and s2 (students stud1/pw1, stud2/pw2, and the
    worker user), the one IOLoop, and job kinds ``boom`` (raises), ``size``
    (body -> its length), ``nap`` (the same, taking a virtual second per byte
    in :class:`InlinePool`) and ``square`` (body ``n`` -> n*n) in a jobs folder."""

    broker: FakeBroker
    loop: FakeIOLoop


def make_room(monkeypatch: Any, tmp_path: Path) -> Room:
    broker = FakeBroker(
        {
            WORKER[0]: (WORKER[1], {"s1", "s2"}),
            "stud1": ("pw1", {"s1"}),
            "stud2": ("pw2", {"s2"}),
        }
    )
    loop = FakeIOLoop()
    install(monkeypatch, broker, loop)
    kinds = tmp_path / "jobs"
    kinds.mkdir()
    for name, code in KINDS.items():
        (kinds / f"{name}.py").write_text(code)
    monkeypatch.setenv("PIMQ_JOBS_DIR", str(kinds))
    import pimq.jobs

    monkeypatch.setattr(pimq.jobs, "_cache", {})
    return Room(broker, loop)


def worker_on_virtual_time(monkeypatch: Any, room: Room) -> Room:
    """``room`` with the worker's clock (``time.monotonic`` of the daemon and the
    vhost links) on the room's virtual time, for deadlines and fair-share ages."""
    import pimq.worker.daemon
    import pimq.worker.vhost

    clock = SimpleNamespace(monotonic=lambda: room.loop.now)
    monkeypatch.setattr(pimq.worker.daemon, "time", clock)
    monkeypatch.setattr(pimq.worker.vhost, "time", clock)
    return room


def start_worker(
    room: Room, vhosts: tuple[str, ...], processes: int = 1, name: str | None = None, **cfg: Any
) -> Any:
    """A :class:`pimq.worker.daemon.Worker` on ``room``, consuming; ``name``: the
    Pi's (several workers in one test need their own); ``cfg``: more
    :class:`pimq.config.WorkerConfig` fields (``store``, ``sandbox_socket``)."""
    from pimq.config import WorkerConfig
    from pimq.worker.daemon import Worker

    config = WorkerConfig(
        host="fake", user=WORKER[0], password=WORKER[1], vhosts=vhosts, processes=processes, **cfg
    )
    worker = Worker(config, log_shards=False, name=name)
    worker.pool.start()
    for link in worker.links:
        link.connect()
    room.loop.run(lambda: all(link.consumer_tag for link in worker.links))
    return worker


def queue_shards(
    room: Room, vhost: str, job: str, kind: str, bodies: list[bytes], headers: Any = None
) -> str:
    """Publish a job's shards as a controller would; returns its result queue."""
    from pimq.protocol import topology
    from pimq.protocol.wire import shard_properties

    reply_to = topology.result_queue(job)
    room.broker.declare(vhost, reply_to, topology.RESULTS, reply_to)
    for i, body in enumerate(bodies):
        props = shard_properties(job, i, len(bodies), kind, "{}", reply_to, 0, headers)
        room.broker.put(vhost, topology.TASKS, topology.TASKS, body, props)
    return reply_to
