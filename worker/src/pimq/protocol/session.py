"""A blocking connection for short commands (``pimq status``, the lab verbs).

Students have no management rights: what they learn about a queue, they learn
by a passive declare, which closes the channel when the queue does not exist.
A :class:`Session` reopens it so that the next call works.
"""

from __future__ import annotations

import pika.exceptions as px

from pimq.config import StudentConfig
from pimq.errors import BrokerError
from pimq.protocol.amqp import blocking_connect


class Session:
    """A blocking connection plus a channel that is reopened after a 404."""

    def __init__(self, cfg: StudentConfig, name: str, heartbeat: int = 30) -> None:
        self.cfg = cfg
        self.conn = blocking_connect(cfg, name, heartbeat)
        self.ch = self.conn.channel()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.conn.is_open:
                self.conn.close()
        except px.AMQPError:
            pass

    def _reopen(self) -> None:
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
