"""The classic RabbitMQ teaching lab, confined to the student's own vhost.

Every verb uses the student's credentials, so it can only touch their vhost.
Queues are declared durable and exchanges fanout+durable when they do not
exist yet; existing ones are used as they are.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions as px

from pimq.client.state import jobs_state_dir
from pimq.config import StudentConfig
from pimq.errors import BrokerError, UsageError
from pimq.protocol import topology
from pimq.protocol.session import Session

#: the lab's messages: persistent text, as in the RabbitMQ tutorials
LAB_MESSAGE = pika.BasicProperties(delivery_mode=topology.PERSISTENT, content_type="text/plain")


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


def ensure_queue(s: Session, queue: str) -> None:
    """Declare ``queue`` durable unless it exists; remember it for ``queue list``."""
    s.ensure_queue(queue)
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
        except (px.AMQPConnectionError, px.ConnectionClosed, px.StreamLostError):
            raise BrokerError("lost the connection to the broker") from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_wrap
def send(cfg: StudentConfig, queue: str, message: str) -> int:
    with Session(cfg, "pimq send") as s:
        ensure_queue(s, queue)
        s.ch.confirm_delivery()
        s.ch.basic_publish("", queue, message.encode(), LAB_MESSAGE)
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
    cfg: StudentConfig, queue: str, count: int | None = None, timeout: float | None = None
) -> int:
    with Session(cfg, "pimq receive") as s:
        ensure_queue(s, queue)
        if count is None:
            _out(f" [*] Waiting for messages in {queue}. To exit press CTRL+C")
        for method, _props, body in _consume(s, queue, False, count, timeout):
            _out(f" [x] Received {body.decode('utf-8', 'replace')!r}")
            s.ch.basic_ack(method.delivery_tag)
        s.ch.cancel()
    return 0


@_wrap
def publish(cfg: StudentConfig, exchange: str, message: str) -> int:
    with Session(cfg, "pimq publish") as s:
        s.ensure_exchange(exchange)
        s.ch.confirm_delivery()
        s.ch.basic_publish(exchange, "", message.encode(), LAB_MESSAGE)
    _out(f" [x] Published {message!r} to exchange {exchange}")
    return 0


@_wrap
def subscribe(
    cfg: StudentConfig, exchange: str, count: int | None = None, timeout: float | None = None
) -> int:
    with Session(cfg, "pimq subscribe") as s:
        s.ensure_exchange(exchange)
        queue = s.ch.queue_declare(queue="", exclusive=True).method.queue
        s.ch.queue_bind(queue=queue, exchange=exchange)
        _out(f" [*] Subscribed to {exchange}. To exit press CTRL+C")
        for _method, _props, body in _consume(s, queue, True, count, timeout):
            _out(f" [x] {body.decode('utf-8', 'replace')}")
        s.ch.cancel()
    return 0


@_wrap
def queue_admin(cfg: StudentConfig, action: str, names: list[str]) -> int:
    with Session(cfg, f"pimq queue {action}") as s:
        if action == "list":
            names = names or [topology.TASKS, topology.DEAD, *remembered_queues()]
            _out(f"{'queue':<40} {'messages':>9} {'consumers':>9}")
            for name in dict.fromkeys(names):
                found = s.probe_queue(name)
                if found is None:
                    _out(f"{name:<40} {'(none)':>9}")
                else:
                    _out(f"{name:<40} {found[0]:>9} {found[1]:>9}")
            return 0
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
) -> int:
    """The lab's worker: sleeps per character; every Nth message it "crashes".

    A crash closes the connection while the message is being worked on. With
    ``--acknowledge`` the broker gives that message to another worker (or to
    this one once it has reconnected); without, the message is lost.
    """
    received = done = 0
    while count is None or done < count:
        with Session(cfg, "pimq lab-worker") as s:
            ensure_queue(s, queue)
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
