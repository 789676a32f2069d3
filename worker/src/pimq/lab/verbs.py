"""The classic RabbitMQ teaching lab, confined to the student's own vhost.

Every verb uses the student's credentials, so it can only touch their vhost.
Queues are declared durable (``--transient``: not, where the broker permits
it) and exchanges durable, fanout or topic, when they do not exist
yet; existing ones are used as they are. Every verb prints one line per
message; ``--count``/``--timeout`` end the waiting ones.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions as px

from pimq.client import management
from pimq.client.state import jobs_state_dir
from pimq.config import StudentConfig
from pimq.errors import BrokerError, JobTimeout, UsageError
from pimq.protocol import topology
from pimq.protocol.session import LAB_QUEUE_WAIT, Session

#: the lab's messages: persistent text, as in the RabbitMQ tutorials
LAB_MESSAGE = pika.BasicProperties(delivery_mode=topology.PERSISTENT, content_type="text/plain")
#: messages to a transient queue: transient too (they could not outlive it)
TRANSIENT_MESSAGE = pika.BasicProperties(
    delivery_mode=topology.TRANSIENT, content_type="text/plain"
)


def _out(text: str) -> None:
    print(text, flush=True)


def _remember_queue(queue: str) -> None:
    try:
        path = jobs_state_dir().parent / "queues"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        known = set(path.read_text().split()) if path.exists() else set()
        if queue not in known:
            with path.open("a") as f:
                f.write(queue + "\n")
    except OSError:
        pass


#: RabbitMQ 4's deprecated feature for transient non-exclusive queues
#: (permitted by default in 4.0, refused where the broker's config denies it)
TRANSIENT_FEATURE = "transient_nonexcl_queues"


def ensure_queue(s: Session, queue: str, durable: bool = True) -> None:
    """Declare ``queue`` (durable unless told) unless it exists; remember it.

    A transient one is declared as asked where the broker permits it; RabbitMQ
    4 with ``transient_nonexcl_queues`` denied closes the connection instead,
    which becomes a :class:`UsageError` that says what it allows (where it
    permits them it logs the deprecation itself: pimq adds nothing, so a lab
    page's output is the same on 3.10 and on 4.0's defaults)."""
    if durable or s.probe_queue(queue) is not None:
        s.ensure_queue(queue, durable)
        _remember_queue(queue)
        return
    version = s.server_version()
    release = ".".join(map(str, version))
    try:
        s.ensure_queue(queue, durable=False)
    except px.ConnectionClosedByBroker as exc:
        if TRANSIENT_FEATURE not in str(exc.reply_text):
            raise
        raise UsageError(
            f"this broker (RabbitMQ {release}) does not permit transient queues that are "
            f"not exclusive (its config denies the deprecated feature {TRANSIENT_FEATURE}): "
            "declare the queue --durable (a durable queue's messages are persistent)"
        ) from None
    _remember_queue(queue)


def remembered_queues() -> list[str]:
    try:
        return (jobs_state_dir().parent / "queues").read_text().split()
    except OSError:
        return []


def _wrap(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except px.ChannelClosedByBroker as exc:
            raise BrokerError(f"the broker refused: {exc.reply_text}") from None
        except px.StreamLostError as exc:
            raise BrokerError(
                f"lost the connection to the broker (StreamLostError: {exc}); "
                "a process that blocks longer than its --heartbeat misses heartbeats"
            ) from None
        except (px.AMQPConnectionError, px.ConnectionClosed):
            raise BrokerError("lost the connection to the broker") from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_wrap
def send(
    cfg: StudentConfig,
    queue: str,
    message: str,
    durable: bool = True,
    heartbeat: int = 30,
    queue_wait: float = LAB_QUEUE_WAIT,
) -> int:
    with Session(cfg, "pimq send", heartbeat) as s:
        ensure_queue(s, queue, durable)
        props = LAB_MESSAGE if durable else TRANSIENT_MESSAGE
        s.publish("", queue, message.encode(), props, queue_wait, f"a message to queue {queue}")
    _out(f" [x] Sent {message!r} to queue {queue}")
    return 0


def _consume(
    s: Session, queue: str, auto_ack: bool, count: int | None, timeout: float | None
) -> Iterator[tuple[Any, Any, bytes]]:
    messages = s.ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=timeout)
    for got, (method, props, body) in enumerate(messages, start=1):
        if method is None:
            return
        yield method, props, body
        if count is not None and got >= count:
            return


@_wrap
def receive(
    cfg: StudentConfig,
    queue: str,
    count: int | None = None,
    timeout: float | None = None,
    durable: bool = True,
    heartbeat: int = 30,
) -> int:
    with Session(cfg, "pimq receive", heartbeat) as s:
        ensure_queue(s, queue, durable)
        if count is None:
            _out(f" [*] Waiting for messages in {queue}. To exit press CTRL+C")
        for method, _props, body in _consume(s, queue, False, count, timeout):
            _out(f" [x] Received {body.decode('utf-8', 'replace')!r}")
            s.ch.basic_ack(method.delivery_tag)
        s.ch.cancel()
    return 0


def _exchange_kind(kind: str | None, keyed: bool) -> str:
    """The type of an exchange declared here: as asked, else topic for keyed use."""
    return kind or ("topic" if keyed else "fanout")


@_wrap
def publish(
    cfg: StudentConfig,
    exchange: str,
    message: str,
    routing_key: str = "",
    kind: str | None = None,
    heartbeat: int = 30,
    queue_wait: float = LAB_QUEUE_WAIT,
) -> int:
    with Session(cfg, "pimq publish", heartbeat) as s:
        s.ensure_exchange(exchange, _exchange_kind(kind, bool(routing_key)))
        what = f"a message to exchange {exchange}"
        s.publish(exchange, routing_key, message.encode(), LAB_MESSAGE, queue_wait, what)
    key = f" with routing key {routing_key}" if routing_key else ""
    _out(f" [x] Published {message!r} to exchange {exchange}{key}")
    return 0


@_wrap
def subscribe(
    cfg: StudentConfig,
    exchange: str,
    count: int | None = None,
    timeout: float | None = None,
    binds: list[str] | None = None,
    kind: str | None = None,
    heartbeat: int = 30,
) -> int:
    """Print what reaches ``exchange`` (with ``--bind KEY``: what matches KEY)."""
    binds = binds or []
    with Session(cfg, "pimq subscribe", heartbeat) as s:
        s.ensure_exchange(exchange, _exchange_kind(kind, bool(binds)))
        queue = s.ch.queue_declare(queue="", exclusive=True).method.queue
        for key in binds or [""]:
            s.ch.queue_bind(queue=queue, exchange=exchange, routing_key=key)
        what = f" ({', '.join(binds)})" if binds else ""
        _out(f" [*] Subscribed to {exchange}{what}. To exit press CTRL+C")
        for method, _props, body in _consume(s, queue, True, count, timeout):
            text = body.decode("utf-8", "replace")
            _out(f" [x] {method.routing_key}: {text}" if binds else f" [x] {text}")
        s.ch.cancel()
    return 0


def _flags(q: management.QueueInfo) -> str:
    flags = ["durable" if q.durable else "transient"]
    if q.exclusive:
        flags.append("exclusive")
    if q.auto_delete:
        flags.append("auto-delete")
    return ",".join(flags)


def _list_queues(cfg: StudentConfig, s: Session, names: list[str]) -> int:
    """Every queue of the vhost (the management API), counts read live over AMQP."""
    try:
        listed = management.list_queues(cfg)
    except management.ManagementUnavailable as exc:
        if names:
            listed = []
        else:
            print(
                f"pimq: management API unavailable ({exc}); showing only the queues pimq knows of",
                file=sys.stderr,
            )
            listed = []
            names = [topology.TASKS, topology.DEAD, *remembered_queues()]
    info = {q.name: q for q in listed}
    wanted = list(dict.fromkeys(names)) if names else list(info)
    _out(f"{'queue':<40} {'messages':>9} {'consumers':>9}  kind")
    for name in wanted:
        q = info.get(name)
        found = s.probe_queue(name) if not (q and q.exclusive) else None
        if found is None and q is not None:
            found = (q.messages, q.consumers)  # exclusive to another connection
        if found is None:
            _out(f"{name:<40} {'(none)':>9}")
        else:
            kind = _flags(q) if q else "-"
            _out(f"{name:<40} {found[0]:>9} {found[1]:>9}  {kind}")
    return 0


@_wrap
def queue_admin(cfg: StudentConfig, action: str, names: list[str], heartbeat: int = 30) -> int:
    with Session(cfg, f"pimq queue {action}", heartbeat) as s:
        if action == "list":
            return _list_queues(cfg, s, names)
        if not names:
            raise UsageError(f"pimq queue {action} needs a queue name")
        for name in names:
            if s.probe_queue(name) is None:
                raise UsageError(f"no queue {name!r} in vhost {cfg.vhost!r}")
            if action == "purge":
                n = s.ch.queue_purge(queue=name).method.message_count
                _out(f" [x] Purged {n} message(s) from {name}")
            else:
                n = s.ch.queue_delete(queue=name).method.message_count
                _out(f" [x] Deleted queue {name} ({n} message(s) dropped)")
    return 0


#: what ``pimq rpc serve`` can compute for a request
def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


RPC_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "fib": lambda text: str(fib(int(text))),
    "upper": str.upper,
    "echo": lambda text: text,
}
RPC_MAX_FIB = 10_000


def _rpc_answer(function: str, text: str) -> str:
    if function == "fib":
        try:
            n = int(text)
        except ValueError:
            return f"error: fib needs a whole number, got {text!r}"
        if not 0 <= n <= RPC_MAX_FIB:
            return f"error: fib needs 0 <= n <= {RPC_MAX_FIB}"
    return RPC_FUNCTIONS[function](text)


@_wrap
def rpc_serve(
    cfg: StudentConfig,
    queue: str,
    function: str = "fib",
    count: int | None = None,
    timeout: float | None = None,
    heartbeat: int = 30,
) -> int:
    """Answer requests on ``queue``: the reply goes to ``reply_to`` with the request's
    ``correlation_id``; the request is acked once the reply is sent."""
    if function not in RPC_FUNCTIONS:
        raise UsageError(f"unknown function {function!r} ({', '.join(RPC_FUNCTIONS)})")
    with Session(cfg, "pimq rpc serve", heartbeat) as s:
        ensure_queue(s, queue)
        s.ch.basic_qos(prefetch_count=1)
        _out(f" [x] Awaiting RPC requests on {queue} ({function})")
        for method, props, body in _consume(s, queue, False, count, timeout):
            text = body.decode("utf-8", "replace")
            answer = _rpc_answer(function, text)
            _out(f" [.] {function}({text}) = {answer}")
            if props.reply_to:
                reply = pika.BasicProperties(
                    correlation_id=props.correlation_id, content_type="text/plain"
                )
                s.ch.basic_publish("", props.reply_to, answer.encode(), reply)
            s.ch.basic_ack(method.delivery_tag)
        s.ch.cancel()
    return 0


@_wrap
def rpc_call(
    cfg: StudentConfig,
    queue: str,
    requests: list[str],
    timeout: float | None = 30.0,
    heartbeat: int = 30,
    queue_wait: float = LAB_QUEUE_WAIT,
) -> int:
    """Send each request with ``reply_to`` (an exclusive queue of this call) and a fresh
    ``correlation_id``; print each reply as it comes. Exit 4 if some never come."""
    with Session(cfg, "pimq rpc call", heartbeat) as s:
        ensure_queue(s, queue)  # requests wait there until a server runs
        reply_queue = s.ch.queue_declare(queue="", exclusive=True).method.queue
        waiting: dict[str, str] = {}
        for text in requests:
            cid = secrets.token_hex(8)
            waiting[cid] = text
            props = pika.BasicProperties(
                reply_to=reply_queue, correlation_id=cid, content_type="text/plain"
            )
            s.publish("", queue, text.encode(), props, queue_wait, f"request {text!r}")
            _out(f" [x] Requested {text!r} (correlation id {cid})")
        deadline = None if timeout is None else time.monotonic() + timeout
        for method, props, body in s.ch.consume(reply_queue, auto_ack=True, inactivity_timeout=1):
            if method is not None:
                text = waiting.pop(props.correlation_id, None)
                if text is None:
                    _out(f" [?] Ignored a reply with unknown correlation id {props.correlation_id}")
                else:
                    _out(f" [.] Got {body.decode('utf-8', 'replace')!r} for {text!r}")
            if not waiting:
                break
            if deadline is not None and time.monotonic() >= deadline:
                s.ch.cancel()
                raise JobTimeout(
                    f"no reply within {timeout:g} s to {len(waiting)} request(s): "
                    f"{', '.join(repr(t) for t in waiting.values())} "
                    f"(is pimq rpc serve {queue} running?)"
                )
        s.ch.cancel()
    return 0


@_wrap
def lab_worker(
    cfg: StudentConfig,
    queue: str,
    lose_every: int = 0,
    acknowledge: bool = False,
    delay_per_char: float = 0.0,
    prefetch: int = 0,
    count: int | None = None,
    timeout: float | None = None,
    durable: bool = True,
    heartbeat: int = 30,
) -> int:
    """The lab's worker: sleeps per character; every Nth message it "crashes".

    A crash closes the connection while the message is being worked on. With
    ``--acknowledge`` the broker gives that message to another worker (or to
    this one once it has reconnected); without, the message is lost.
    """
    received = done = 0
    while count is None or done < count:
        with Session(cfg, "pimq lab-worker", heartbeat) as s:
            ensure_queue(s, queue, durable)
            if prefetch:
                s.ch.basic_qos(prefetch_count=prefetch)
            mode = "manual acks" if acknowledge else "auto-ack"
            _out(f" [*] Worker on {queue} ({mode}, prefetch {prefetch or 'unlimited'})")
            crashed = False
            for method, _props, body in _consume(s, queue, not acknowledge, None, timeout):
                received += 1
                text = body.decode("utf-8", "replace")
                _out(f" [x] Received {text!r}")
                time.sleep(delay_per_char * len(text))
                if lose_every and received % lose_every == 0:
                    _out(f" [!] Crashed while working on {text!r}")
                    crashed = True
                    break
                if acknowledge:
                    s.ch.basic_ack(method.delivery_tag)
                done += 1
                _out(f" [x] Done {text!r}")
                if count is not None and done >= count:
                    break
            if not crashed:
                return 0
            sys.stdout.flush()
        # leaving the with block closed the connection without acking
    return 0
