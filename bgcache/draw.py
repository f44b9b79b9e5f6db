"""The draw policy (DESIGN 5): which pool events a job hands out, in which order, and after.

Beside :mod:`bgcache.store` (it reads a pool only for :func:`plan_jobs`); below the
consumers that follow the policy: :class:`bgcache.overlay.PoolOverlay`, the torch datasets
(:mod:`bgcache.adapters.torch`) and the basf2 module (:mod:`bgcache.adapters.basf2`). Like
Belle II's BGOverlayInput, but without silent reuse:

* the pool's positions ``0 .. N-1`` are split into ``njobs`` contiguous, disjoint shares;
  job ``j`` owns ``[j*N // njobs, (j+1)*N // njobs)`` (:func:`share_bounds`);
* workers of one job split its share again: worker ``w`` of ``W`` draws sub-share
  ``j*W + w`` of ``njobs*W`` (:func:`sub_share`), so a job's workers never overlap and
  different jobs stay disjoint, whatever ``W``;
* a job starts at an offset inside its share derived from ``(seed, job)`` by the
  counter-based generator (purpose ``OVERLAY``; :func:`start_offset`), reads on
  sequentially and wraps inside the share (:func:`draw_ranges`, :func:`draw_positions`):
  no pool event is handed out twice in one pass;
* when the share is used up (:data:`ON_EXHAUSTED`): ``"generate"`` generates events on the
  fly; ``"reuse"`` starts another pass and counts the reuses; ``"error"`` raises;
* fallback keys: one fallback seed per (overlay seed, pool), :func:`fallback_seed`,
  re-derived while it equals a seed of the pool, and job ``j`` takes the indices
  ``j * 2**48 + k`` (:func:`fallback_key`): no fallback key is a pool key and no two jobs
  share one (up to :data:`MAX_JOBS` jobs of 2**48 fallback events each).

:func:`plan_jobs` applies the policy to a whole production before it runs.
"""

from __future__ import annotations

import numbers
import os
from typing import TYPE_CHECKING, Any

from bgcache.errors import CorruptBlockError, PoolObjectError, UsageError, did_you_mean
from bgcache.seeding import EventKey, Purpose, event_rng, seed_from_string, validate_seed

if TYPE_CHECKING:
    from bgcache.store.pool import Pool

#: What a job does when its share of the pool is used up.
ON_EXHAUSTED = ("generate", "reuse", "error")
#: Bits of a fallback index that count a job's events; the bits above hold the job.
FALLBACK_INDEX_BITS = 48
#: Most jobs (sub-shares included) a pool can be split into: fallback keys never collide.
MAX_JOBS = 1 << 16


def check_share(job: Any, njobs: Any, prefix: str = "") -> tuple[int, int]:
    """``(job, njobs)`` checked: ``njobs`` in 1..:data:`MAX_JOBS`, ``job`` in 0..njobs-1.

    Args:
        prefix: put before the parameter's name in the error (``"PXDBackgroundOverlay
            parameter "``).

    Raises:
        UsageError: not integers, or out of range (names which). Integers of every kind
            (numpy's included) are accepted and returned as ``int``.

    Example:
        >>> check_share(3, 4)
        (3, 4)
        >>> try:
        ...     check_share(4, 4)
        ... except UsageError as exc:
        ...     print(exc)
        job must be an integer in 0..3, got 4
    """

    def check(name: str, value: Any, low: int, high: int) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not low <= int(value) <= high
        ):
            raise UsageError(f"{prefix}{name} must be an integer in {low}..{high}, got {value!r}")
        return int(value)

    n = check("njobs", njobs, 1, MAX_JOBS)
    return check("job", job, 0, n - 1), n


def check_on_exhausted(value: Any, prefix: str = "") -> str:
    """``value`` if it is one of :data:`ON_EXHAUSTED`.

    Raises:
        UsageError: another value (with the closest known one).
    """
    if value not in ON_EXHAUSTED:
        raise UsageError(
            f"{prefix}on_exhausted must be one of {', '.join(ON_EXHAUSTED)}, got {value!r}"
            f"{did_you_mean(str(value), ON_EXHAUSTED)}"
        )
    return str(value)


def share_bounds(n_events: int, job: int, njobs: int) -> tuple[int, int]:
    """Pool positions ``[start, stop)`` of job ``job`` of ``njobs``.

    Example:
        >>> [share_bounds(10, j, 3) for j in range(3)]
        [(0, 3), (3, 6), (6, 10)]
    """
    return job * n_events // njobs, (job + 1) * n_events // njobs


def sub_share(job: int, njobs: int, worker: int, workers: int) -> tuple[int, int]:
    """The (job, njobs) worker ``worker`` of ``workers`` of job ``job`` draws.

    Raises:
        UsageError: ``worker`` not in ``0 .. workers-1``, or more than :data:`MAX_JOBS`
            shares in all.

    Example:
        >>> sub_share(1, 4, worker=2, workers=8)
        (10, 32)
    """
    if not 0 <= worker < workers:
        raise UsageError(f"worker must be in 0..{workers - 1}, got {worker}")
    if njobs * workers > MAX_JOBS:
        raise UsageError(
            f"{njobs} jobs of {workers} worker processes each make {njobs * workers} pool "
            f"shares, more than {MAX_JOBS}: use fewer processes"
        )
    return job * workers + worker, njobs * workers


def start_offset(seed: int, job: int, size: int) -> int:
    """Where job ``job`` starts inside a share of ``size`` events (0 for an empty share)."""
    if size <= 0:
        return 0
    return int(event_rng(seed, job, Purpose.OVERLAY).integers(size))


def draw_ranges(n_events: int, seed: int, job: int, njobs: int) -> tuple[range, range]:
    """The positions one pass of job ``job`` hands out, in order, as two ranges: from its
    start offset to the end of its share, then from the share's start to the offset.

    Example:
        >>> draw_ranges(10, seed=1, job=2, njobs=3)
        (range(8, 10), range(6, 8))
    """
    start, stop = share_bounds(n_events, job, njobs)
    first = start + start_offset(seed, job, stop - start)
    return range(first, stop), range(start, first)


def draw_positions(n_events: int, seed: int, job: int, njobs: int) -> list[int]:
    """The pool positions job ``job`` hands out, in order, in one pass over its share.

    Example:
        >>> order = draw_positions(10, seed=1, job=2, njobs=3)
        >>> sorted(order) == list(range(6, 10)), len(set(order)) == 4
        (True, True)
    """
    head, tail = draw_ranges(n_events, seed, job, njobs)
    return [*head, *tail]


def fallback_seed(seed: int, pool_seeds: set[int] | frozenset[int]) -> int:
    """The seed of an overlay's fallback stream: derived from ``seed``, not a pool seed."""
    text = f"bgcache-fallback/{seed}"
    value = seed_from_string(text)
    while value in pool_seeds:
        text += "/"
        value = seed_from_string(text)
    return value


def fallback_key(seed: int, job: int, k: int) -> EventKey:
    """The key of job ``job``'s ``k``-th fallback event in the fallback stream ``seed``."""
    return EventKey(seed, (job << FALLBACK_INDEX_BITS) + k)


def generation_seconds_per_event(pool: Pool) -> float | None:
    """Mean generation time per event recorded by the builds of ``pool`` (block markers),
    or None if no block recorded one (a damaged marker is left out)."""
    from bgcache.store.format import marker_key
    from bgcache.store.records import MAX_DOCUMENT_BYTES, parse_block_marker

    seconds = events = 0.0
    for info in pool.block_list:
        try:
            raw = pool.storage.read(marker_key(info.path), MAX_DOCUMENT_BYTES)
            marker = parse_block_marker(raw, info.path)
        except (CorruptBlockError, PoolObjectError):
            continue
        value = marker.get("generate_seconds")
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds += float(value)
            events += info.n_events
    return seconds / events if events else None


def plan_jobs(
    pool: str | os.PathLike[str] | Pool,
    *,
    njobs: int,
    events_per_job: int,
    seed: int = 0,
    on_exhausted: str = "generate",
) -> dict[str, Any]:
    """What ``njobs`` overlay jobs of ``events_per_job`` events each would take from a pool.

    Per job: its share of the pool, where it starts (for ``seed``), events from the pool,
    and events generated, reused or missing (``on_exhausted="error"``) beyond its share;
    the CPU time of the generated ones, from the generation time the pool's builds
    recorded (same device as the build).

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", events=10)
        ...     plan = plan_jobs(tmp + "/p", njobs=4, events_per_job=3)
        ...     [(j["share_events"], j["from_pool"], j["beyond_share"]) for j in plan["jobs"]]
        [(2, 2, 1), (3, 3, 0), (2, 2, 1), (3, 3, 0)]
    """
    from bgcache.store.pool import Pool, open_pool

    opened = pool if isinstance(pool, Pool) else open_pool(pool)
    seed = validate_seed(seed)
    for name, value, low in (("njobs", njobs, 1), ("events_per_job", events_per_job, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    if njobs > MAX_JOBS:
        raise UsageError(f"njobs must be at most {MAX_JOBS}, got {njobs}")
    check_on_exhausted(on_exhausted)
    n = len(opened)
    per_event = generation_seconds_per_event(opened)
    jobs: list[dict[str, Any]] = []
    for job in range(njobs):
        start, stop = share_bounds(n, job, njobs)
        size = stop - start
        beyond = max(0, events_per_job - size)
        generated = beyond if on_exhausted == "generate" else 0
        jobs.append(
            {
                "job": job,
                "share": [start, stop],
                "share_events": size,
                "start_position": start + start_offset(seed, job, size),
                "from_pool": min(size, events_per_job),
                "beyond_share": beyond,
                "generated": generated,
                "reused": beyond if on_exhausted == "reuse" else 0,
                "missing": beyond if on_exhausted == "error" else 0,
                "generate_seconds": generated * per_event if per_event is not None else None,
            }
        )
    demand = njobs * events_per_job
    generated_total = sum(j["generated"] for j in jobs)
    return {
        "pool": opened.url,
        "model": opened.model,
        "device_type": opened.content.get("device_type"),
        "pool_events": n,
        "njobs": njobs,
        "events_per_job": events_per_job,
        "seed": seed,
        "on_exhausted": on_exhausted,
        "demand": demand,
        "from_pool": sum(j["from_pool"] for j in jobs),
        "beyond_share": sum(j["beyond_share"] for j in jobs),
        "generated": generated_total,
        "reused": sum(j["reused"] for j in jobs),
        "missing": sum(j["missing"] for j in jobs),
        "jobs_exceeding_share": sum(1 for j in jobs if j["beyond_share"]),
        "seconds_per_generated_event": per_event,
        "generate_seconds": generated_total * per_event if per_event is not None else None,
        "max_job_generate_seconds": max((j["generate_seconds"] or 0.0 for j in jobs), default=0.0)
        if per_event is not None
        else None,
        "events_to_add": max(0, demand - n),
        "jobs": jobs,
    }


__all__ = [
    "FALLBACK_INDEX_BITS",
    "MAX_JOBS",
    "ON_EXHAUSTED",
    "check_on_exhausted",
    "check_share",
    "draw_positions",
    "draw_ranges",
    "fallback_key",
    "fallback_seed",
    "generation_seconds_per_event",
    "plan_jobs",
    "share_bounds",
    "start_offset",
    "sub_share",
]
