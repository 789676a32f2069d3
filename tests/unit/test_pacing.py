"""The prefetch window a worker asks for, from the pace of a vhost's shards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pimq.worker.pacing import MAX_HELD_BYTES, MAX_PREFETCH, Pace


def settled(seconds: float, size: int) -> Pace:
    pace = Pace()
    for _ in range(60):
        pace.observe(seconds, size)
    return pace


def test_a_new_vhost_starts_shallow() -> None:
    assert Pace().prefetch(1) == 2
    assert Pace().prefetch(4) == 4
    assert not Pace().quick


def test_slow_shards_one_per_process() -> None:
    assert settled(3.0, 1000).prefetch(4) == 4
    assert settled(0.5, 5_000_000).prefetch(1) == 2


def test_tiny_quick_shards_get_the_deepest_window() -> None:
    pace = settled(0.00005, 0)
    assert pace.quick
    assert pace.prefetch(1) == MAX_PREFETCH


def test_quick_but_big_shards_are_held_back_by_memory() -> None:
    pace = settled(0.003, 2_000_000)  # 2 MB shards counted in 3 ms
    assert pace.prefetch(2) * 2_000_000 <= MAX_HELD_BYTES
    assert pace.prefetch(2) >= 2


@given(
    st.floats(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=200_000_000),
    st.integers(min_value=1, max_value=64),
)
def test_window_bounds(seconds: float, size: int, processes: int) -> None:
    n = settled(seconds, size).prefetch(processes)
    assert n >= max(2, processes)  # every process can have a shard
    assert n <= max(2, processes, MAX_PREFETCH)
    if n > max(2, processes):  # grown beyond the floor: within time and memory
        assert n * size <= MAX_HELD_BYTES * 1.01
        assert n & (n - 1) == 0


@given(st.lists(st.floats(min_value=0.0001, max_value=10), min_size=2, max_size=30))
def test_slower_never_means_deeper(times: list[float]) -> None:
    times = sorted(times)
    windows = [settled(t, 100).prefetch(2) for t in times]
    assert windows == sorted(windows, reverse=True)
