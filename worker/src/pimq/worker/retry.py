"""What becomes of a shard that failed, and of a message that is no shard.

A shard whose ``run()`` raised goes back to its queue (``pimq.tasks``, or
its routed job's ``pimq.job.<id>``) with
``pimq-attempt`` + 1 (through the ``pimq.tasks`` exchange: the worker user has
no rights on the default exchange) and is acked once that publish is
confirmed. After :data:`MAX_ATTEMPTS` it is dead-lettered: the original
message goes to ``pimq.dead`` with the reason and the traceback, and the job's
controller gets a failed result for that shard, so the student hears of it at
once rather than at a timeout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pimq.protocol import topology
from pimq.protocol.wire import (
    MODULE_KIND,
    Shard,
    dead_properties,
    encode_results,
    retry_properties,
    shard_result,
)
from pimq.worker import metrics

if TYPE_CHECKING:
    from pimq.worker.vhost import VhostLink

log = logging.getLogger(__name__)

#: runs of one shard before it is dead-lettered
MAX_ATTEMPTS = 3
#: seconds before a message whose retry or dead letter the broker refused (the
#: queue at the room's cap) is given back: kept, never dropped, but not sent
#: round again at once
REFUSED_BACKOFF = 5.0


def settled_when_confirmed(link: VhostLink, generation: int, tag: int) -> Any:
    """A confirm callback: ack delivery ``tag`` once its copy is confirmed; if
    the copy was refused, give the delivery back after :data:`REFUSED_BACKOFF`."""

    def confirmed(ok: bool) -> None:
        if ok:
            link.settle(generation, [tag], True)
        else:
            log.warning(
                "vhost %s: a retry or dead letter was refused (queue at its cap): "
                "giving the message back in %g s",
                link.vhost,
                REFUSED_BACKOFF,
            )
            link.worker.ioloop.call_later(
                REFUSED_BACKOFF, lambda: link.settle(generation, [tag], False)
            )

    return confirmed


def last_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def retry_or_dead_letter(
    link: VhostLink,
    tag: int,
    generation: int,
    props: Any,
    shard: Shard,
    tb: str,
    key: str = topology.TASKS,
) -> None:
    """Shard ``shard`` (delivery ``tag``) raised with traceback ``tb``; a retry
    goes back through the ``pimq.tasks`` exchange with routing key ``key``
    (to the queue it came from: ``pimq.tasks`` or a routed job's queue)."""
    attempt = shard.attempt + 1
    error = last_line(tb)
    if attempt < MAX_ATTEMPTS:
        log.warning(
            "job %s shard %d/%d failed (attempt %d of %d), retrying: %s",
            shard.job,
            shard.index + 1,
            shard.count,
            attempt,
            MAX_ATTEMPTS,
            error,
        )
        link.worker.metrics.shard(link.vhost, metrics.FAILED)
        link.publish(
            topology.TASKS,
            key,
            shard.body,
            retry_properties(props, attempt),
            settled_when_confirmed(link, generation, tag),
        )
    else:
        reason = f"job raised on all {MAX_ATTEMPTS} attempts: {error}"
        dead_letter(link, tag, props, shard.body, reason, tb, shard)


def dead_letter(
    link: VhostLink,
    tag: int,
    props: Any,
    body: bytes,
    reason: str,
    tb: str | None = None,
    shard: Shard | None = None,
) -> None:
    """Move delivery ``tag`` to ``pimq.dead`` with ``reason``; acked once that
    is confirmed. A valid ``shard`` also fails its job's result."""
    log.warning("vhost %s: dead-lettered a message: %s", link.vhost, reason)
    link.worker.metrics.shard(link.vhost, metrics.DEAD_LETTERED)
    generation = link.generation
    link.publish(
        topology.DEAD,
        "",
        body,
        dead_properties(props, reason, link.worker_name, tb),
        settled_when_confirmed(link, generation, tag),
    )
    if shard is not None:
        # a student's own traceback goes back to them (a built-in's stays in pimq.dead)
        student_tb = (tb or "") if shard.kind == MODULE_KIND else ""
        failure = shard_result(shard.index, False, error=reason, traceback=student_tb)
        result = encode_results(shard.job, link.worker_name, [failure])
        link.publish(topology.RESULTS, shard.reply_to, result, topology.RESULT_PROPS)
