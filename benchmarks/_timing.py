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
