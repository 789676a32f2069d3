"""Taking a cancelled job's shards back out of ``pimq.tasks``.

Workers drop the shards of a cancelled job when they see them (they heard the
cancel broadcast). With no worker serving the vhost nobody would, and the
shards would sit in the queue until some worker ran them for nothing. So a
controller that gives up on a job while no worker consumes ``pimq.tasks``
reads the queue once through on a channel of its own: it acks its own
shards (gone) and holds every other message unacked; closing the channel
puts those back where they were, in order. Its own channel keeps its result
consumer, whose ``multiple`` acks must never cover held messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pimq.protocol import topology
from pimq.protocol.wire import job_of

IDLE_SECONDS = 1.0  # no message for this long: the queue has been read through


class Withdrawal:
    """Run once: :meth:`start`; ``done(taken)`` is called with the number removed."""

    def __init__(
        self, conn: Any, ioloop: Any, job: str, expected: int, done: Callable[[int], None]
    ) -> None:
        self.conn = conn
        self.ioloop = ioloop
        self.job = job
        self.expected = expected  # messages in the queue when we looked
        self.done = done
        self.channel: Any = None
        self.seen = 0
        self.taken = 0
        self.timer: Any = None
        self.over = False

    def start(self) -> None:
        self.conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch: Any) -> None:
        self.channel = ch
        ch.add_on_close_callback(lambda _ch, _exc: self._end())
        ch.basic_consume(queue=topology.TASKS, on_message_callback=self._on_message)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.ioloop.remove_timeout(self.timer)
        self.timer = self.ioloop.call_later(IDLE_SECONDS, self._end)

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self.seen += 1
        if job_of(props) == self.job:
            ch.basic_ack(method.delivery_tag)
            self.taken += 1
        if self.seen >= self.expected:
            self._end()
        else:
            self._arm()

    def _end(self) -> None:
        if self.over:
            return
        self.over = True
        if self.timer is not None:
            self.ioloop.remove_timeout(self.timer)
        ch = self.channel
        if ch is not None and ch.is_open:
            ch.close()  # what it still holds goes back to the queue, in order
        self.done(self.taken)
