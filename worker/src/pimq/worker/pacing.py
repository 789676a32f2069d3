"""How much work a worker takes from one student vhost at a time.

The broker hands a worker up to ``prefetch`` unacked shards per vhost. Slow
shards want a shallow window (a busy Pi must not sit on work an idle one
could take); quick shards want a deep one (the round trip to the broker
would otherwise dominate), but never so deep that the held shard bodies
crowd a Pi's memory. :class:`Pace` keeps moving averages of one vhost's
shard times and sizes and turns them into a prefetch count and a batch size.
"""

from __future__ import annotations

#: Shards quicker than this on average run in batches (one pipe message and one
#: result message per batch instead of per shard).
QUICK = 0.005
MAX_BATCH = 64
#: Work held per shard process beyond the one it runs, in seconds of its time.
WINDOW_SECONDS = 0.25
MAX_PREFETCH = 128
#: Shard bodies held per vhost at most (a Pi has 1-8 GiB and many students).
MAX_HELD_BYTES = 32 * 2**20
WEIGHT = 0.2  # of the newest observation in the moving averages


def _floor_pow2(n: float) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


class Pace:
    """Moving averages of one vhost's shards: seconds to run and body bytes."""

    def __init__(self) -> None:
        self.seconds = 1.0  # start as if shards were slow: a shallow window
        self.bytes = 0.0

    def observe(self, seconds: float, size: int) -> None:
        self.seconds += WEIGHT * (seconds - self.seconds)
        self.bytes += WEIGHT * (size - self.bytes)

    @property
    def quick(self) -> bool:
        return self.seconds < QUICK

    def prefetch(self, processes: int) -> int:
        """Unacked shards to hold: at least one per process (and 2), then as many
        as keep each process busy for :data:`WINDOW_SECONDS`, within
        :data:`MAX_HELD_BYTES` and :data:`MAX_PREFETCH`; a power of two, so it
        changes (and costs a ``basic.qos``) only when the pace really changes."""
        floor = max(2, processes)
        by_time = processes * WINDOW_SECONDS / max(self.seconds, 1e-6)
        by_bytes = MAX_HELD_BYTES / max(self.bytes, 1.0)
        wanted = min(by_time, by_bytes, MAX_PREFETCH)
        return max(floor, _floor_pow2(wanted))
