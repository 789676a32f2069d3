"""The lab verbs' confirmed publish (``Session.publish``): a nack from a queue at
the room's cap is waited out and tried again, for a bounded time, then a clear
QueueFull. Pure logic with a virtual clock; the real broker refusing a message
is in tests/integration/test_quotas.py."""

from __future__ import annotations

import pika.exceptions as px
import pytest

from pimq.errors import QueueFull
from pimq.protocol.session import publish_until_taken


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def refusing(times: int, sent: list[int]):
    def publish() -> None:
        if len(sent) < times:
            sent.append(0)
            raise px.NackError([])
        sent.append(1)

    return publish


def test_a_refused_message_is_sent_again_once_there_is_room():
    clock, sent, told = Clock(), [], []
    refused = publish_until_taken(
        refusing(4, sent), clock.sleep, 30.0, "m", clock, lambda: told.append(clock.now)
    )
    assert refused == 4
    assert told == [0.0]  # the student hears once that it waits
    assert sent == [0, 0, 0, 0, 1]  # published exactly once in the end
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])  # backing off


def test_a_queue_that_stays_full_stops_with_queue_full_after_the_wait():
    clock, sent = Clock(), []
    with pytest.raises(QueueFull, match=r"refused a message to queue q for 10 s \(\d+ tries\)"):
        publish_until_taken(refusing(10**6, sent), clock.sleep, 10.0, "a message to queue q", clock)
    assert clock.now == pytest.approx(10.0)  # no longer than the wait
    assert max(clock.sleeps) == 2.0  # the back-off is capped
    assert 1 not in sent  # never taken: never claimed as sent


def test_other_broker_errors_are_not_taken_for_a_full_queue():
    clock = Clock()

    def closed() -> None:
        raise px.ChannelClosedByBroker(403, "ACCESS_REFUSED")

    with pytest.raises(px.ChannelClosedByBroker):
        publish_until_taken(closed, clock.sleep, 10.0, "m", clock)
    assert clock.sleeps == []
