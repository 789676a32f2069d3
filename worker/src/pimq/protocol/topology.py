"""The AMQP topology of one student vhost. The only module that knows the names.

Per vhost:

* ``pimq.tasks``   durable queue with the shards, fed by the direct exchange
  ``pimq.tasks`` (routing key ``pimq.tasks``). The worker user only has
  ``^pimq\\.`` rights, so it cannot use the default exchange: it re-queues
  retries through this exchange.
* ``pimq.dead``    durable queue, fed by the fanout exchange ``pimq.dead``.
* ``pimq.control`` fanout exchange; each worker connection binds its own
  exclusive queue ``pimq.control.<host>.<pid>.<n>`` to it.
* ``pimq.results`` direct exchange; the controller binds its per-job queue
  ``pimq.result.<job-id>`` with routing key = queue name = ``reply_to``.
* ``pimq.data``    direct exchange; an upload's chunks (``pimq data put``) go
  to it once with the upload's id as routing key and reach one queue per
  receiving Pi, ``pimq.data.<upload>.<pi>``.
* ``pimq.job.<job-id>`` a *routed* job's shards (``pimq run --pis``): a
  durable queue bound to the ``pimq.tasks`` exchange with routing key = its
  name, declared by the controller (and, idempotently, by the workers that
  consume it). Only the Pis named in the job's route announcement on
  ``pimq.control`` consume it; a Pi that dies gives its unacked shards back to
  this queue, where the route's other Pis take them. Nobody deletes it
  (a worker may be consuming it again just then: a deleted queue would close
  its channel); it expires a minute after the last consumer left.

Both the worker and the controller declare the shared part idempotently with
the same arguments (:data:`SHARED`). The fixed message properties live here
too: shards and dead letters are persistent, results and control broadcasts
are transient (:data:`RESULT_PROPS`, :data:`CONTROL_PROPS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika

TASKS = "pimq.tasks"
DEAD = "pimq.dead"
CONTROL = "pimq.control"
RESULTS = "pimq.results"
RESULT_PREFIX = "pimq.result."
CONTROL_PREFIX = "pimq.control."
JOB_PREFIX = "pimq.job."
DATA = "pimq.data"
DATA_PREFIX = "pimq.data."

#: ``delivery_mode`` values.
TRANSIENT = 1
PERSISTENT = 2

JSON = "application/json"
# Results are transient: their confirms need no disk write. If a broker restart
# loses one, the controller re-publishes every shard it has no result for.
RESULT_PROPS = pika.BasicProperties(delivery_mode=TRANSIENT, content_type=JSON)
# A cancel or done broadcast only matters to workers connected now.
CONTROL_PROPS = pika.BasicProperties(delivery_mode=TRANSIENT, content_type=JSON)

# A job's result queue disappears this long after its controller went away.
RESULT_QUEUE_EXPIRES_MS = 30 * 60 * 1000

# (kind, name, detail...) in declaration order.
SHARED: tuple[tuple[str, ...], ...] = (
    ("exchange", TASKS, "direct"),
    ("queue", TASKS),
    ("bind", TASKS, TASKS, TASKS),
    ("exchange", DEAD, "fanout"),
    ("queue", DEAD),
    ("bind", DEAD, DEAD, ""),
    ("exchange", CONTROL, "fanout"),
    ("exchange", RESULTS, "direct"),
    ("exchange", DATA, "direct"),
)


def result_queue(job_id: str) -> str:
    return RESULT_PREFIX + job_id


def is_result_queue(name: str | None) -> bool:
    return name is not None and name.startswith(RESULT_PREFIX)


def job_queue(job_id: str) -> str:
    """The queue of a routed job's shards (bound to :data:`TASKS` by its name)."""
    return JOB_PREFIX + job_id


def is_job_queue(name: str | None) -> bool:
    return name is not None and name.startswith(JOB_PREFIX)


def task_key(queue: str) -> str:
    """The routing key on the :data:`TASKS` exchange that reaches ``queue``
    (``pimq.tasks`` itself, or a routed job's queue): where a retry goes back."""
    return queue


#: a routed job's queue disappears this long after nobody uses it (its Pis
#: leave it when the job ends, or 30 s after its controller went quiet)
JOB_QUEUE_EXPIRES_MS = 60 * 1000


def job_queue_arguments() -> dict[str, Any]:
    return {"x-expires": JOB_QUEUE_EXPIRES_MS}


def declare_job_queue(channel: Any, queue: str, on_done: Callable[[Any], None]) -> None:
    """Declare a routed job's queue and bind it to :data:`TASKS` (asynchronous
    channel); ``on_done(frame)`` gets the bind's confirmation."""
    channel.queue_declare(queue=queue, durable=True, arguments=job_queue_arguments())
    channel.queue_bind(queue=queue, exchange=TASKS, routing_key=task_key(queue), callback=on_done)


#: an upload's queues disappear this long after nobody uses them
DATA_QUEUE_EXPIRES_MS = 10 * 60 * 1000


def data_queue(upload: str, pi: str) -> str:
    """Where one Pi receives the chunks of one upload (``pimq data put``); bound
    to the :data:`DATA` exchange with the upload's id as routing key, so each
    chunk is published once and copied by the broker to every Pi's queue."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in pi)
    return f"{DATA_PREFIX}{upload}.{safe}"


def data_queue_options() -> dict[str, Any]:
    """How an upload's queue is declared, by the head and by each Pi alike: durable
    (RabbitMQ 4 denies transient non-exclusive queues), gone once unused."""
    return {"durable": True, "arguments": {"x-expires": DATA_QUEUE_EXPIRES_MS}}


def control_queue(host: str, pid: int, serial: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in host)
    return f"{CONTROL_PREFIX}{safe}.{pid}.{serial}"


def result_queue_arguments() -> dict[str, Any]:
    return {"x-expires": RESULT_QUEUE_EXPIRES_MS}


def declare_shared(channel: Any, on_done: Callable[[], None] | None = None) -> None:
    """Declare the shared topology on a pika channel.

    With a ``BlockingChannel`` pass no ``on_done``: every call blocks. With an
    asynchronous ``Channel`` the calls are queued by pika and ``on_done`` runs
    once the last one is confirmed by the broker.
    """
    last = len(SHARED) - 1
    for i, (kind, name, *rest) in enumerate(SHARED):
        kwargs: dict[str, Any] = {}
        if on_done is not None:
            kwargs["callback"] = (lambda _frame: on_done()) if i == last else None
        if kind == "exchange":
            channel.exchange_declare(exchange=name, exchange_type=rest[0], durable=True, **kwargs)
        elif kind == "queue":
            channel.queue_declare(queue=name, durable=True, **kwargs)
        else:
            channel.queue_bind(queue=name, exchange=rest[0], routing_key=rest[1], **kwargs)
