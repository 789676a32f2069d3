from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from pika.spec import Basic

from pimq.protocol.amqp import Acks, Confirms


def frame(method):
    return SimpleNamespace(method=method)


def test_single_multiple_and_nack() -> None:
    c = Confirms()
    seen: list[tuple[int, bool]] = []
    for i in range(1, 6):
        c.published(lambda ok, i=i: seen.append((i, ok)))
    c.published(None)  # 6: nobody waits
    c.published(lambda ok: seen.append((7, ok)))
    c.on_frame(frame(Basic.Ack(delivery_tag=2, multiple=False)))
    c.on_frame(frame(Basic.Ack(delivery_tag=3, multiple=True)))
    c.on_frame(frame(Basic.Nack(delivery_tag=4, multiple=False)))
    c.on_frame(frame(Basic.Ack(delivery_tag=7, multiple=True)))
    assert seen == [(2, True), (1, True), (3, True), (4, False), (5, True), (7, True)]
    assert len(c) == 0


def test_when_drained_waits_for_the_last_confirm() -> None:
    c = Confirms()
    calls: list[str] = []
    c.when_drained(lambda: calls.append("at once"))  # nothing waits
    c.published(lambda ok: None)
    c.published(lambda ok: None)
    c.when_drained(lambda: calls.append("drained"))
    c.on_frame(frame(Basic.Ack(delivery_tag=1, multiple=False)))
    assert calls == ["at once"]
    c.on_frame(frame(Basic.Nack(delivery_tag=2, multiple=False)))
    assert calls == ["at once", "drained"]


class BrokerChannel:
    """What the broker keeps of one channel's deliveries: each unacked tag must be
    settled exactly once, the way the client meant it."""

    def __init__(self, meant: dict[int, bool]) -> None:
        self.meant = meant  # tag -> True (ack) / False (nack); absent: still running
        self.unacked: set[int] = set()
        self.outcome: dict[int, bool] = {}
        self.frames = 0

    def _settle(self, tag: int, ok: bool) -> None:
        assert tag in self.unacked, f"tag {tag} settled twice or never delivered"
        assert self.meant.get(tag) is ok, f"tag {tag} settled as {ok}, meant {self.meant.get(tag)}"
        self.unacked.discard(tag)
        self.outcome[tag] = ok

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames += 1
        for t in sorted(t for t in self.unacked if t <= tag) if multiple else [tag]:
            self._settle(t, True)

    def basic_nack(self, tag: int, requeue: bool = True) -> None:
        self.frames += 1
        self._settle(tag, False)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60), st.randoms())
def test_coalesced_acks_settle_each_delivery_once_as_meant(plan, rnd) -> None:
    """Deliveries finish in any order, some are given back (nack); flushes happen at
    random points: every delivery ends settled exactly once, as meant, and a
    ``multiple`` ack never covers a delivery that is still running or was given back."""
    acks = Acks()
    meant: dict[int, bool] = {}
    ch = BrokerChannel(meant)
    tags = list(range(1, len(plan) + 1))
    for tag in tags:
        ch.unacked.add(tag)
        acks.received(tag)
    order = tags[:]
    rnd.shuffle(order)
    for tag, (ok, flush) in zip(order, plan, strict=True):
        meant[tag] = ok
        if ok:
            acks.ack(tag)
        else:
            acks.nack(ch, tag)
        if flush:
            acks.flush(ch)
    acks.flush(ch)
    assert ch.outcome == meant
    assert not acks and not acks.window


def test_in_order_acks_become_one_frame() -> None:
    acks, meant = Acks(), {t: True for t in range(1, 17)}
    ch = BrokerChannel(meant)
    for tag in meant:
        ch.unacked.add(tag)
        acks.received(tag)
        acks.ack(tag)
    acks.flush(ch)
    assert ch.frames == 1 and ch.outcome == meant
