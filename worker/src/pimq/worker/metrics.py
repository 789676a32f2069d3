"""The worker's own metrics, written as a node-exporter textfile.

The counts live here in plain dictionaries, updated on the I/O thread where a
shard's fate is decided (:mod:`pimq.worker.vhost`, :mod:`pimq.worker.retry`,
:mod:`pimq.worker.daemon`); every :data:`WRITE_EVERY` seconds they are
rendered with ``prometheus_client`` (Debian's ``python3-prometheus-client``)
and written atomically (a temporary file in the same folder, renamed over
the last one) to the path ``metrics`` of worker.yaml, in the folder the node
exporter's textfile collector reads. Prometheus scrapes them with the node's
exporter (job ``node``), which adds the ``pi`` label; the file itself carries
only ``student`` (the vhost) and ``outcome``:

``pimq_worker_shards_total{student,outcome}``
    shards that ended here: ``done`` (their result was published),
    ``failed`` (``run()`` raised; it goes back to its queue for another
    attempt), ``dead_lettered`` (sent to ``pimq.dead``: the last attempt
    failed, or the message could not be run at all)
``pimq_worker_shard_seconds_total{student}``
    pool seconds the student's shards ran here
``pimq_worker_sandbox_kills_total{student}``
    shards ended at a limit: the time limit (the pool process killed), the
    broker's consumer_timeout, or a sandbox's memory or task limit
``pimq_worker_processes`` / ``pimq_worker_processes_busy``
    the pool's size and the processes running shards now

A folder that is missing or not writable never stops the worker: the failure
is logged once (and again when it recovers) and the next write tries again.
Counters start at 0 when the worker starts; Prometheus' ``rate``/``increase``
take restarts in their stride.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: seconds between two writes of the textfile
WRITE_EVERY = 5.0

DONE = "done"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
OUTCOMES = (DONE, FAILED, DEAD_LETTERED)

#: how the reasons of shards ended at a limit read (the pool's time limit,
#: :data:`pimq.worker.pool.BROKER_DEADLINE`, the sandbox runner's memory and
#: task limits, a sandbox killed by its cgroup)
LIMIT_MARKS = (
    "time limit ",
    "the broker's consumer_timeout",
    "memory limit ",
    "task limit ",
    "killed at its memory or task limit",
)


def is_limit_kill(reason: str) -> bool:
    """Whether a failed shard's reason (its traceback text) says it was ended
    at a limit rather than raising by itself."""
    return any(mark in reason for mark in LIMIT_MARKS)


class WorkerMetrics:
    """The counts of one worker process; :meth:`render` is the textfile."""

    def __init__(self, pool_size: int = 0) -> None:
        self.shards: dict[tuple[str, str], int] = {}
        self.seconds: dict[str, float] = {}
        self.kills: dict[str, int] = {}
        self.processes = pool_size
        self.busy = 0

    # -- what the worker tells ---------------------------------------------
    def shard(self, student: str, outcome: str, n: int = 1) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        self.shards[(student, outcome)] = self.shards.get((student, outcome), 0) + n

    def ran(self, student: str, seconds: float) -> None:
        self.seconds[student] = self.seconds.get(student, 0.0) + max(0.0, seconds)

    def killed(self, student: str) -> None:
        self.kills[student] = self.kills.get(student, 0) + 1

    def pool(self, size: int, busy: int) -> None:
        self.processes, self.busy = size, busy

    def count(self, student: str, outcome: str) -> int:
        return self.shards.get((student, outcome), 0)

    # -- the textfile ----------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        """prometheus_client's collector protocol: the metric families now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        shards = CounterMetricFamily(
            "pimq_worker_shards",
            "Shards that ended on this Pi, per student and outcome",
            labels=["student", "outcome"],
        )
        for (student, outcome), n in sorted(self.shards.items()):
            shards.add_metric([student, outcome], n)
        yield shards
        seconds = CounterMetricFamily(
            "pimq_worker_shard_seconds",
            "Pool seconds the student's shards ran on this Pi",
            labels=["student"],
        )
        for student, value in sorted(self.seconds.items()):
            seconds.add_metric([student], value)
        yield seconds
        kills = CounterMetricFamily(
            "pimq_worker_sandbox_kills",
            "Shards ended at a time, memory or task limit on this Pi",
            labels=["student"],
        )
        for student, n in sorted(self.kills.items()):
            kills.add_metric([student], n)
        yield kills
        yield GaugeMetricFamily(
            "pimq_worker_processes", "Shard processes of this Pi's pool", value=self.processes
        )
        yield GaugeMetricFamily(
            "pimq_worker_processes_busy", "Shard processes running shards now", value=self.busy
        )

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        return generate_latest(registry)


class TextfileWriter:
    """Writes a :class:`WorkerMetrics` to ``path`` atomically, readable by the
    node exporter (0644 whatever the umask), never raising."""

    def __init__(self, metrics: WorkerMetrics, path: str) -> None:
        self.metrics = metrics
        self.path = path
        self.failing = False

    def write(self) -> bool:
        folder = os.path.dirname(self.path) or "."
        tmp = ""
        try:
            data = self.metrics.render()
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pimq-worker.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(data)
            os.replace(tmp, self.path)
        except (OSError, ImportError) as exc:
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            if not self.failing:
                log.warning("worker metrics not written to %s: %s", self.path, exc)
            self.failing = True
            return False
        if self.failing:
            log.info("worker metrics written to %s again", self.path)
        self.failing = False
        return True


def available() -> bool:
    """Whether prometheus_client can be imported here."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def every(ioloop: Any, seconds: float, action: Callable[[], object]) -> None:
    """Run ``action`` now and then every ``seconds`` on ``ioloop`` (pika's)."""

    def tick() -> None:
        try:
            action()
        except Exception:  # metrics never stop the worker
            log.exception("writing the worker's metrics failed")
        ioloop.call_later(seconds, tick)

    tick()
