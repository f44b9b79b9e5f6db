"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn``, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def paired_medians(
    items: list[Any], first: Callable[[Any], Any], second: Callable[[Any], Any]
) -> tuple[float, float]:
    """Median times of ``first(item)`` and ``second(item)``, alternated item by item."""
    t_a, t_b = [], []
    for item in items:
        t0 = time.perf_counter()
        first(item)
        t_a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        second(item)
        t_b.append(time.perf_counter() - t0)
    return statistics.median(t_a), statistics.median(t_b)


def ranged_read_times(
    storage: Any, store: Any, ranges: list[tuple[str, int]], length: int, repeats: int
) -> tuple[float, float]:
    """Seconds per ranged read of ``length`` bytes at each ``(key, offset)``: through
    bgcache's ``storage.read_range`` and through a zarr-python store's ``get`` (sync)."""
    from zarr.abc.store import RangeByteRequest
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    prototype = default_buffer_prototype()

    def ours() -> None:
        for key, off in ranges:
            storage.read_range(key, off, length)

    def theirs() -> None:
        for key, off in ranges:
            buf = sync(store.get(key, prototype, RangeByteRequest(off, off + length)))
            assert buf is not None
            buf.to_bytes()

    n = len(ranges)
    return best_time(ours, repeats) / n, best_time(theirs, repeats) / n
