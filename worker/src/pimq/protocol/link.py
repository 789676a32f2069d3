"""One asynchronous broker connection: the life cycle both sides share.

A :class:`Link` opens a :class:`pika.SelectConnection` on a given IOLoop,
opens one channel, turns on publisher confirms, declares the shared topology
(:func:`pimq.protocol.topology.declare_shared`) and then calls
:meth:`Link.on_ready` with the channel. When the channel or the connection
goes, it forgets the channel (and every confirm it waited for) and calls
:meth:`Link.on_down`; whether and when to reconnect is the owner's decision
(:class:`Backoff` helps). The worker's per-vhost link and the controller are
both links; neither writes this sequence again.
"""

from __future__ import annotations

from typing import Any

import pika

from pimq.protocol import amqp, topology


class Backoff:
    """Delays between reconnects: ``first``, doubling up to ``cap``."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class Link:
    """Override :meth:`on_ready` and :meth:`on_down`; optionally
    :meth:`on_channel_closed` and :meth:`on_confirm_frame`."""

    #: shown as the connection's name in the management UI
    connection_name = "pimq"

    def __init__(self, ioloop: Any, parameters: pika.ConnectionParameters, where: tuple) -> None:
        self.ioloop = ioloop
        self.parameters = parameters
        self.where = where  # (host, port, vhost, user) for error messages
        self.conn: Any = None
        self.channel: Any = None
        #: bumped on every connect: deliveries of an older connection are stale
        self.generation = 0
        self.confirms = amqp.Confirms()

    # -- hooks -----------------------------------------------------------
    def on_ready(self, channel: Any) -> None:
        """The channel is open, confirming, and the shared topology exists."""

    def on_down(self, why: str, was_open: bool) -> None:
        """The connection failed to open (``was_open`` False) or closed."""

    def on_channel_closed(self, exc: BaseException) -> None:
        """The channel closed under an open connection. By default the
        connection is closed too, so :meth:`on_down` follows."""
        self.close()

    def on_confirm_frame(self) -> None:
        """Called after every confirm frame was booked."""

    # -- life cycle ------------------------------------------------------
    def connect(self) -> None:
        self.generation += 1
        self.conn = pika.SelectConnection(
            parameters=self.parameters,
            on_open_callback=self.__on_open,
            on_open_error_callback=self.__on_open_error,
            on_close_callback=self.__on_closed,
            custom_ioloop=self.ioloop,
        )

    def describe(self, exc: BaseException | None) -> str:
        return amqp.describe(exc, *self.where, tls=self.parameters.ssl_options is not None)

    def is_open(self) -> bool:
        return self.channel is not None and self.channel.is_open

    def close(self) -> None:
        """Close the connection if it is open (:meth:`on_down` follows)."""
        if self.conn is not None and self.conn.is_open:
            self.conn.close()

    def __on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self.__on_channel)

    def __on_open_error(self, conn: Any, exc: BaseException) -> None:
        self.__forget()
        self.on_down(self.describe(exc), False)

    def __on_closed(self, conn: Any, exc: BaseException) -> None:
        self.__forget()
        self.on_down(self.describe(exc), True)

    def __forget(self) -> None:
        self.channel = None
        self.confirms.reset()

    def __on_channel(self, channel: Any) -> None:
        self.channel = channel
        self.confirms.reset()
        channel.add_on_close_callback(self.__on_channel_closed)
        channel.confirm_delivery(self.__on_confirm)
        topology.declare_shared(channel, on_done=lambda: self.on_ready(channel))

    def __on_channel_closed(self, channel: Any, exc: BaseException) -> None:
        if channel is not self.channel:
            return
        self.__forget()
        self.on_channel_closed(exc)

    def __on_confirm(self, frame: Any) -> None:
        self.confirms.on_frame(frame)
        self.on_confirm_frame()

    # -- publishing with confirms ----------------------------------------
    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        props: pika.BasicProperties,
        on_confirm: Any = None,
    ) -> bool:
        """Publish on the open channel; ``on_confirm(ok)`` runs once the broker
        confirms or refuses it. False (nothing sent) without an open channel."""
        ch = self.channel
        if ch is None or not ch.is_open:
            return False
        ch.basic_publish(exchange, routing_key, body, props)
        self.confirms.published(on_confirm)
        return True
