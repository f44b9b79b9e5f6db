"""The fidelity gate: whether a reduced precision keeps the physics of fp32
(``bgcache fidelity``; the contract is in docs/models.md, "The fidelity gate").

Two pools of one model and checkpoint, one in a reduced precision and one in fp32, are
read on the keys they share (the first ``events`` of the reference's order), and the
reduced one passes when all of these hold:

* **mean occupancy**: ``|occupancy / fp32 - 1| <= 0.3 %`` (:data:`MAX_OCCUPANCY_SHIFT`);
* **every sensor**: its occupancy within :data:`SENSOR_SIGMAS` (2) of the fp32 pool's
  statistical error over the events (the standard error of that sensor's mean);
* **charge spectrum** and **cluster size**: the Kolmogorov-Smirnov distance between the
  two precisions on the same keys is below the one between two fp32 samples of different
  keys of the same size: the keys are split into halves A and B, and
  ``max(KS(reduced A, fp32 A), KS(reduced B, fp32 B)) < KS(fp32 A, fp32 B)``;
* **compare's verdict**: :func:`bgcache.compare.compare_statistics` of the two finds every
  quantity compatible (its tests treat the two as independent samples, which same-keys
  pools are not: a lenient check, the four above are the strict ones).

Events are read one at a time (memory does not grow with the pools). Needs scipy
(``pip install 'bgcache[compare]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bgcache.errors import UsageError
from bgcache.geometry import SENSORS
from bgcache.stats import PoolStatistics, ks_statistic
from bgcache.store.pool import Pool

#: Events of the gate's contract (200 keys; fewer are accepted, and reported).
GATE_EVENTS = 200
#: Fewest shared keys the gate runs on (two halves of 4; the verdict of so few is weak, and
#: the report says how many keys it judged: the contract is :data:`GATE_EVENTS`).
MIN_GATE_EVENTS = 8
#: Largest relative shift of the mean occupancy against fp32 that passes.
MAX_OCCUPANCY_SHIFT = 0.003
#: Largest shift of a sensor's occupancy, in units of its statistical error, that passes.
SENSOR_SIGMAS = 2.0
#: Content keys on which the two pools must agree to be compared at all.
_SAME_CONTENT = ("model", "architecture", "checkpoint_sha256", "optimize", "hit_threshold")


def _shared_keys(pool: Pool, reference: Pool, events: int | None) -> list[tuple[int, int]]:
    """Positions ``(in pool, in reference)`` of the first ``events`` keys both hold."""
    out = []
    for position in range(len(reference)):
        key = reference.key(position)
        found = pool.find(key.seed, key.index)
        if found is not None:
            out.append((found[0].position + found[1], position))
            if events is not None and len(out) == events:
                break
    return out


def _check_pair(pool: Pool, reference: Pool) -> None:
    for which, p in (("pool", pool), ("reference", reference)):
        if p.imported or "precision" not in p.content:
            raise UsageError(
                f"{which} '{p.url}' holds {'imported' if p.imported else p.model} events, not a "
                "GAN model's: the gate compares two precisions of one GAN model"
            )
    if reference.content.get("precision") != "fp32":
        raise UsageError(
            f"reference '{reference.url}' is {reference.content.get('precision')}, not fp32: "
            "the gate measures a precision against an fp32 pool of the same keys"
        )
    differ = [k for k in _SAME_CONTENT if pool.content.get(k) != reference.content.get(k)]
    if differ:
        k = differ[0]
        raise UsageError(
            f"the pools differ in {k} ({pool.content.get(k)!r} against "
            f"{reference.content.get(k)!r}): the gate compares one model and checkpoint in "
            "two precisions"
        )


def _halves(
    pool: Pool, pairs: list[tuple[int, int]], side: int, progress: Callable[[int], None] | None
) -> tuple[PoolStatistics, PoolStatistics]:
    half = len(pairs) // 2
    out = (PoolStatistics(clusters=True), PoolStatistics(clusters=True))
    for i, pair in enumerate(pairs[: 2 * half]):
        out[0 if i < half else 1].add(pool.event(pair[side]))
        if progress is not None:
            progress(1)
    return out


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    return float(ks_statistic(a / max(a.sum(), 1), b / max(b.sum(), 1)))


def _criterion(name: str, label: str, value: float, limit: float, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "value": value,
        "limit": limit,
        "passed": bool(value <= limit) if name in ("occupancy", "sensors") else bool(value < limit),
        "text": text,
    }


def fidelity_gate(
    pool: Pool,
    reference: Pool,
    *,
    events: int | None = GATE_EVENTS,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Judge ``pool`` (a reduced precision) against ``reference`` (fp32, same model and
    checkpoint) on the first ``events`` keys both hold (all shared keys if None).

    Returns a JSON-serialisable report: ``pool``, ``reference`` (url, precision,
    device_class), ``model``, ``events`` (shared keys judged), ``criteria`` (each with
    ``name``, ``label``, ``value``, ``limit``, ``passed``, ``text``), ``compare`` (compare's
    report of the two, without histograms), ``passed`` (all criteria).

    ``progress(1)`` is called after each event read (``2 * events`` of them).

    Raises:
        UsageError: not two GAN pools of one model and checkpoint, a reference that is not
            fp32, fewer than :data:`MIN_GATE_EVENTS` shared keys.
        MissingDependencyError: scipy is not installed.
    """
    from bgcache.compare import compare_statistics
    from bgcache.significance import require_scipy

    require_scipy()
    if events is not None and (isinstance(events, bool) or not isinstance(events, int)):
        raise UsageError(f"events must be an integer, got {events!r}")
    if events is not None and events < MIN_GATE_EVENTS:
        raise UsageError(f"the gate needs at least {MIN_GATE_EVENTS} events, got {events}")
    _check_pair(pool, reference)
    pairs = _shared_keys(pool, reference, events)
    if len(pairs) < MIN_GATE_EVENTS:
        raise UsageError(
            f"the pools share {len(pairs)} keys; the gate needs at least {MIN_GATE_EVENTS}: "
            "build both with the same --seed and -n"
        )
    r_a, r_b = _halves(pool, pairs, 0, progress)
    f_a, f_b = _halves(reference, pairs, 1, progress)
    r_all = PoolStatistics(clusters=True).merge(r_a).merge(r_b)
    f_all = PoolStatistics(clusters=True).merge(f_a).merge(f_b)
    n = r_all.n_events

    shift = r_all.occupancy() / f_all.occupancy() - 1 if f_all.occupancy() else float("inf")
    sigma = f_all.occupancy_errors()
    diff = r_all.occupancy_per_sensor() - f_all.occupancy_per_sensor()
    with np.errstate(divide="ignore", invalid="ignore"):
        pulls = np.where(sigma > 0, np.abs(diff) / sigma, np.where(diff == 0, 0.0, np.inf))
    worst = int(np.argmax(pulls))
    s = SENSORS[worst]
    ks_charge = max(
        _ks(r_a.charge_histogram, f_a.charge_histogram),
        _ks(r_b.charge_histogram, f_b.charge_histogram),
    )
    ks_charge_fp32 = _ks(f_a.charge_histogram, f_b.charge_histogram)
    assert r_a.clusters and r_b.clusters and f_a.clusters and f_b.clusters
    ks_size = max(
        _ks(r_a.clusters.size, f_a.clusters.size), _ks(r_b.clusters.size, f_b.clusters.size)
    )
    ks_size_fp32 = _ks(f_a.clusters.size, f_b.clusters.size)
    report = compare_statistics(r_all, f_all)
    criteria = [
        _criterion(
            "occupancy",
            "mean occupancy",
            abs(shift),
            MAX_OCCUPANCY_SHIFT,
            f"{100 * shift:+.3f} % against fp32 (limit ±{100 * MAX_OCCUPANCY_SHIFT:.1f} %)",
        ),
        _criterion(
            "sensors",
            "every sensor",
            float(pulls[worst]),
            SENSOR_SIGMAS,
            f"worst {s.layer}.{s.ladder}.{s.sensor}: {pulls[worst]:.2f} sigma of its "
            f"statistical error (limit {SENSOR_SIGMAS:g})",
        ),
        _criterion(
            "charge",
            "charge spectrum",
            ks_charge,
            ks_charge_fp32,
            f"KS {ks_charge:.5f} on the same keys; two fp32 halves of other keys {ks_charge_fp32:.5f}",
        ),
        _criterion(
            "cluster_size",
            "cluster size",
            ks_size,
            ks_size_fp32,
            f"KS {ks_size:.5f} on the same keys; two fp32 halves of other keys {ks_size_fp32:.5f}",
        ),
    ]
    verdict = report["verdict"]
    criteria.append(
        {
            "name": "compare",
            "label": "compare's verdict",
            "value": verdict.get("p_value"),
            "limit": None,
            "passed": bool(verdict["compatible"]),
            "text": str(verdict["verdict"]),
        }
    )
    for entry in report["distributions"].values():  # the histograms are for plots
        for k in ("bin_edges", "pool_histogram", "reference_histogram"):
            entry.pop(k, None)
    report.pop("correlation", None)
    return {
        "pool": _side(pool),
        "reference": _side(reference),
        "model": pool.model,
        "events": n,
        "criteria": criteria,
        "compare": report,
        "passed": all(c["passed"] for c in criteria),
    }


def _side(p: Pool) -> dict[str, Any]:
    return {
        "url": p.url,
        "precision": p.content.get("precision"),
        "device_class": p.content.get("device_class"),
        "device_type": p.content.get("device_type"),
        "events": len(p),
    }
