from __future__ import annotations

from types import SimpleNamespace

from pika.spec import Basic

from pimq.amqp import Confirms


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
