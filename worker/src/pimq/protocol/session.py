"""A blocking connection for short commands (``pimq status``, the lab verbs).

Students have no management rights: what they learn about a queue, they learn
by a passive declare, which closes the channel when the queue does not exist.
A :class:`Session` reopens it so that the next call works.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pika.exceptions as px

from pimq.config import StudentConfig
from pimq.errors import BrokerError, QueueFull
from pimq.protocol.amqp import blocking_connect

#: seconds a lab verb waits for room in a queue at the room's cap (``--queue-wait``)
LAB_QUEUE_WAIT = 30.0


def publish_until_taken(
    publish: Callable[[], None],
    sleep: Callable[[float], None],
    wait: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    on_refused: Callable[[], None] | None = None,
) -> int:
    """Call ``publish`` (a confirmed publish) until the broker takes it; a nack
    (a queue at its cap, ``overflow: reject-publish``) means wait and try again:
    0.1 s doubling to 2 s, for ``wait`` seconds in all, then :class:`QueueFull`
    naming ``what``; ``on_refused`` runs at the first refusal. Returns how
    many tries were refused."""
    deadline = clock() + wait
    delay, refused = 0.1, 0
    while True:
        try:
            publish()
            return refused
        except px.NackError:
            refused += 1
            if refused == 1 and on_refused is not None:
                on_refused()
        left = deadline - clock()
        if left <= 0:
            raise QueueFull(
                f"the broker refused {what} for {wait:g} s ({refused} tries): a queue it goes "
                "to is at the room's cap (bytes or messages). Receive or purge messages "
                "from it, then send again"
            )
        sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


class Session:
    """A blocking connection plus a channel that is reopened after a 404."""

    def __init__(self, cfg: StudentConfig, name: str, heartbeat: int = 30) -> None:
        self.cfg = cfg
        self.conn = blocking_connect(cfg, name, heartbeat)
        self.ch = self.conn.channel()
        self.confirming = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.conn.is_open:
                self.conn.close()
        except px.AMQPError:
            pass

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        props: Any,
        wait: float = LAB_QUEUE_WAIT,
        what: str = "the message",
    ) -> int:
        """A confirmed publish that waits for room (:func:`publish_until_taken`),
        heartbeats answered meanwhile; how many tries were refused."""
        if not self.confirming:
            self.ch.confirm_delivery()
            self.confirming = True

        def say() -> None:
            print(
                f"pimq: the broker refused {what}: a queue it goes to is at the room's cap; "
                f"waiting up to {wait:g} s for room",
                file=sys.stderr,
                flush=True,
            )

        return publish_until_taken(
            lambda: self.ch.basic_publish(exchange, routing_key, body, props),
            self.conn.sleep,
            wait,
            what,
            on_refused=say,
        )

    def _reopen(self) -> None:
        self.confirming = False
        self.ch = self.conn.channel()

    def probe_queue(self, queue: str) -> tuple[int, int] | None:
        """(messages, consumers) of a queue, or None if it does not exist."""
        try:
            ok = self.ch.queue_declare(queue=queue, passive=True)
        except px.ChannelClosedByBroker as exc:
            self._reopen()
            if exc.reply_code == 404:
                return None
            raise BrokerError(f"queue {queue!r}: {exc.reply_text}") from None
        return ok.method.message_count, ok.method.consumer_count

    def ensure_queue(self, queue: str, durable: bool = True) -> None:
        if self.probe_queue(queue) is None:
            self.ch.queue_declare(queue=queue, durable=durable)

    def server_version(self) -> tuple[int, ...]:
        """The broker's release, e.g. (3, 10, 8), from the connection's server properties."""
        props = getattr(self.conn, "_impl", None)
        raw = getattr(props, "server_properties", None) or {}
        version = raw.get("version", b"0")
        if isinstance(version, bytes):
            version = version.decode("ascii", "replace")
        return parse_version(str(version))

    def ensure_exchange(self, exchange: str, kind: str = "fanout") -> None:
        try:
            self.ch.exchange_declare(exchange=exchange, passive=True)
        except px.ChannelClosedByBroker as exc:
            self._reopen()
            if exc.reply_code != 404:
                raise BrokerError(f"exchange {exchange!r}: {exc.reply_text}") from None
            self.ch.exchange_declare(exchange=exchange, exchange_type=kind, durable=True)


def parse_version(text: str) -> tuple[int, ...]:
    """``"4.0.5"`` -> (4, 0, 5); ``"3.13.7+rc.1"`` -> (3, 13, 7); junk -> (0,)."""
    parts = []
    for piece in text.split("+")[0].split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts) or (0,)
