"""Names of newer pika that the published RabbitMQ tutorials use, for an older pika.

The official Python tutorials are written for pika >= 1.3; bookworm ships pika
1.2, which lacks ``pika.DeliveryMode`` (tutorial 2: ``delivery_mode=
pika.DeliveryMode.Persistent``). :func:`backport` adds it when it is missing,
as an ``IntEnum`` with pika 1.3's members and values, so pika 1.2 encodes it
like the plain integer it stands for. Nothing else of pika is changed, and a
pika that has the name keeps its own.

``pimq.connect()`` and ``pimq.parameters()`` call it, so a tutorial whose only
change is its connection parameters runs as published on every release.
"""

from __future__ import annotations

import enum
from types import ModuleType


class DeliveryMode(enum.IntEnum):
    """pika 1.3's ``pika.DeliveryMode`` (AMQP ``delivery_mode`` values)."""

    Transient = 1
    Persistent = 2


def backport(pika: ModuleType) -> list[str]:
    """Add the names ``pika`` lacks; the names added."""
    added = []
    if not hasattr(pika, "DeliveryMode"):
        pika.DeliveryMode = DeliveryMode  # type: ignore[attr-defined]
        added.append("DeliveryMode")
    return added
