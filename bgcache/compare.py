"""Two pools side by side, as physicists judge a background generator (``bgcache compare``).

A pool (say of GAN events) is compared with a reference pool (say imported from the
background overlay files, :mod:`bgcache.importer`) on events sampled evenly by position
from each (``sample`` of them, all with 0): their :class:`~bgcache.stats.PoolStatistics`
with cluster histograms are gathered one event at a time, so memory does not grow with the
pools (16 bytes per sampled event: its hit and cluster counts).

The report (:func:`compare_statistics`, every field listed there) holds

* ``occupancy``: per sensor, per layer and overall, pool and reference with their standard
  errors over events, and their ratio with its error; each sensor's pull;
* ``distributions``: hits per event, clusters per event, pixel charge, cluster size,
  cluster charge, cluster extent in u and in v: each side's mean with its standard error,
  the Kolmogorov-Smirnov and Wasserstein-1 distances (:mod:`bgcache.stats`; exact for the
  per-event counts, over integer bins for the others, whose last bin also counts what is
  above it), and both normalised histograms;
* ``correlation``: the 40 x 40 correlation matrices of sensor occupancies over events, the
  largest and the mean ``|delta rho|`` off the diagonal beside the mean that sampling alone
  gives where both are 0, and each pair's Fisher-z pull;
* ``tests``: one statistical test per quantity (:mod:`bgcache.significance`: its p-value
  from scipy.stats, its significance and a verdict, "compatible" or "differs at N sigma"),
  and ``verdict``: the global one over all of them.

The standard errors of the per-pixel and per-cluster means treat pixels and clusters as
independent; they are a lower bound (pixels of one event are correlated). The tests of the
spectra do not: they measure that correlation over events.

Needs scipy (``pip install 'bgcache[compare]'``) for the clusters and the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bgcache.errors import UsageError
from bgcache.geometry import N_SENSORS, SENSORS
from bgcache.significance import (
    SIGMA_MAX,
    correlation_test,
    homogeneity_test,
    ks_test,
    overall_verdict,
    require_scipy,
    sensor_chi2_test,
    significance,
    z_test,
)
from bgcache.stats import (
    LAYER_SENSORS,
    PoolStatistics,
    ks_statistic,
    ratio_with_error,
    sample_distances,
    wasserstein_1,
)
from bgcache.store.pool import Pool

#: The distributions compared: name -> (label, unit).
DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    "hits_per_event": ("hits per event", "hits"),
    "clusters_per_event": ("clusters per event", "clusters"),
    "charge": ("pixel charge", "ADU"),
    "cluster_size": ("cluster size", "pixels"),
    "cluster_charge": ("cluster charge", "ADU"),
    "cluster_extent_u": ("cluster u extent", "pixels"),
    "cluster_extent_v": ("cluster v extent", "pixels"),
}
#: The quantities tested, in the order of the report's table: name -> label.
QUANTITIES: dict[str, str] = {
    "occupancy": "occupancy, all sensors",
    "occupancy_layer_1": "occupancy, layer 1",
    "occupancy_layer_2": "occupancy, layer 2",
    "occupancy_per_sensor": "occupancy per sensor",
    **{name: label for name, (label, _) in DISTRIBUTIONS.items()},
    "correlation": "occupancy correlation",
}
#: Bins of the per-event histograms in a report (for plots; the distances are exact).
EVENT_BINS = 40
#: Default number of events sampled from each pool.
DEFAULT_SAMPLE = 500


def gather(
    pool: Pool, sample: int | None, progress: Callable[[int], None] | None = None
) -> PoolStatistics:
    """Statistics with clusters of ``sample`` events spread evenly over ``pool`` (all if
    None), read one at a time; ``progress(1)`` after each."""
    stats = PoolStatistics(clusters=True)
    for _, event in pool.sample(sample):
        stats.add(event)
        if progress is not None:
            progress(1)
    return stats


def _histogram_side(histogram: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Normalised histogram over bins 0.., its mean and the mean's standard error."""
    total = int(histogram.sum())
    if not total:
        return np.zeros(histogram.size), 0.0, 0.0
    p = histogram / total
    x = np.arange(histogram.size, dtype=np.float64)
    mean = float(p @ x)
    var = float(p @ (x - mean) ** 2)
    return p, mean, float(np.sqrt(var / total))


def _sample_side(values: np.ndarray) -> tuple[float, float]:
    if not values.size:
        return 0.0, 0.0
    error = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
    return float(values.mean()), error


def _histogram_entry(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    pa, ma, ea = _histogram_side(a)
    pb, mb, eb = _histogram_side(b)
    both = bool(a.sum() and b.sum())
    return {
        "pool_mean": ma,
        "pool_mean_error": ea,
        "reference_mean": mb,
        "reference_mean_error": eb,
        "pool_entries": int(a.sum()),
        "reference_entries": int(b.sum()),
        "ks": ks_statistic(pa, pb) if both else None,
        "wasserstein_1": wasserstein_1(pa, pb) if both else None,
        "bin_edges": (np.arange(a.size + 1, dtype=np.float64) - 0.5).tolist(),  # bins on integers
        "pool_histogram": pa.tolist(),
        "reference_histogram": pb.tolist(),
        "overflow": bool(a[-1] or b[-1]),  # the last bin holds values above it
    }


def _sample_entry(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    ma, ea = _sample_side(a)
    mb, eb = _sample_side(b)
    ks, w1 = sample_distances(a, b)
    both = np.concatenate([a, b]) if a.size + b.size else np.zeros(1)
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, EVENT_BINS + 1)
    ha = np.histogram(a, edges)[0]
    hb = np.histogram(b, edges)[0]
    return {
        "pool_mean": ma,
        "pool_mean_error": ea,
        "reference_mean": mb,
        "reference_mean_error": eb,
        "pool_entries": int(a.size),
        "reference_entries": int(b.size),
        "ks": ks,
        "wasserstein_1": w1,
        "bin_edges": edges.tolist(),
        "pool_histogram": (ha / max(a.size, 1)).tolist(),
        "reference_histogram": (hb / max(b.size, 1)).tolist(),
        "overflow": False,
    }


def _occupancy(a: PoolStatistics, b: PoolStatistics) -> dict[str, Any]:
    oa, ob = a.occupancy_per_sensor(), b.occupancy_per_sensor()

    def entry(sel: slice | list[int]) -> dict[str, Any]:
        index = np.arange(N_SENSORS)[sel]
        pa, pb = float(oa[index].mean()), float(ob[index].mean())
        ea, eb = a.occupancy_error(index.tolist()), b.occupancy_error(index.tolist())
        ratio, error = ratio_with_error(pa, ea, pb, eb)
        return {
            "pool": pa,
            "pool_error": ea,
            "reference": pb,
            "reference_error": eb,
            "ratio": ratio,
            "ratio_error": error,
        }

    return {
        "sensors": [s._asdict() | entry([s.index]) for s in SENSORS],
        "layers": [
            {"layer": layer, "first_sensor": r.start, "last_sensor": r.stop - 1}
            | entry(slice(r.start, r.stop))
            for layer, r in LAYER_SENSORS.items()
        ],
        "overall": entry(slice(None)),
    }


def _correlation(a: PoolStatistics, b: PoolStatistics) -> dict[str, Any]:
    ra, rb = a.correlation(), b.correlation()
    delta = np.abs(ra - rb)
    off = ~np.eye(N_SENSORS, dtype=bool) & np.isfinite(delta)
    out: dict[str, Any] = {
        "pool": _finite_lists(ra),
        "reference": _finite_lists(rb),
        "pool_mean_off_diagonal": _mean_or_none(ra[off & np.isfinite(ra)]),
        "reference_mean_off_diagonal": _mean_or_none(rb[off & np.isfinite(rb)]),
        "max_abs_delta": None,
        "max_abs_delta_sensors": None,
        "mean_abs_delta": None,
        # |delta rho| from sampling alone where both rho are 0: delta ~ N(0, sigma) with
        # sigma^2 = 1/(n_a - 3) + 1/(n_b - 3) (Fisher), so its mean is sigma * sqrt(2/pi)
        "mean_abs_delta_from_sampling": _sampling_scale(a.n_events, b.n_events),
    }
    if off.any():
        masked = np.where(off, delta, -1.0)
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
        out["max_abs_delta"] = float(masked[i, j])
        out["max_abs_delta_sensors"] = [_name(int(i)), _name(int(j))]
        out["mean_abs_delta"] = float(delta[off].mean())
    return out


def _sampling_scale(n_a: int, n_b: int) -> float | None:
    if min(n_a, n_b) <= 3:
        return None
    return float(np.sqrt(1 / (n_a - 3) + 1 / (n_b - 3)) * np.sqrt(2 / np.pi))


def _name(index: int) -> str:
    s = SENSORS[index]
    return f"{s.layer}.{s.ladder}.{s.sensor}"


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _finite_lists(matrix: np.ndarray) -> list[list[float | None]]:
    return [[float(x) if np.isfinite(x) else None for x in row] for row in matrix]


def _tests(
    pool: PoolStatistics, reference: PoolStatistics, report: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """One test per quantity (:data:`QUANTITIES`); puts the pulls into ``report``."""
    occ = report["occupancy"]
    tests: dict[str, dict[str, Any]] = {}

    def means(d: Mapping[str, Any]) -> dict[str, Any]:
        return z_test(d["pool"], d["pool_error"], d["reference"], d["reference_error"])

    tests["occupancy"] = means(occ["overall"])
    for layer in occ["layers"]:
        tests[f"occupancy_layer_{layer['layer']}"] = means(layer)
    covariance = pool.occupancy_covariance() / max(pool.n_events, 1)
    covariance += reference.occupancy_covariance() / max(reference.n_events, 1)
    per_sensor = sensor_chi2_test(
        pool.occupancy_per_sensor() - reference.occupancy_per_sensor(), covariance
    )
    for sensor, pull in zip(occ["sensors"], per_sensor.pop("pulls"), strict=True):
        sensor["pull"] = pull
    tests["occupancy_per_sensor"] = per_sensor
    pc, rc = pool.clusters, reference.clusters
    assert pc is not None and rc is not None
    tests["hits_per_event"] = ks_test(pool.hits_per_event, reference.hits_per_event)
    tests["clusters_per_event"] = ks_test(pc.clusters_per_event, rc.clusters_per_event)
    tests["charge"] = homogeneity_test(pool.charge_batches, reference.charge_batches)
    for name in ("size", "charge", "extent_u", "extent_v"):
        tests[f"cluster_{name}"] = homogeneity_test(pc.batches[name], rc.batches[name])
    correlation, pulls = correlation_test(
        pool.correlation(), reference.correlation(), pool.n_events, reference.n_events
    )
    pair = correlation["max_abs_pull_pair"]
    correlation["max_abs_pull_sensors"] = None if pair is None else [_name(i) for i in pair]
    report["correlation"]["pull"] = _finite_lists(pulls)
    tests["correlation"] = correlation
    for name, test in tests.items():
        test["label"] = QUANTITIES[name]
    return {name: tests[name] for name in QUANTITIES}


def compare_statistics(pool: PoolStatistics, reference: PoolStatistics) -> dict[str, Any]:
    """The comparison report of two sets of statistics gathered with clusters
    (JSON-serialisable, no NaN or infinity).

    The report's fields:

    * ``n_events``: ``pool``, ``reference``: the events each set holds.
    * ``occupancy``: ``overall``, ``layers`` (with ``layer``, ``first_sensor``,
      ``last_sensor``) and ``sensors`` (40, with ``index``, ``layer``, ``ladder``,
      ``sensor``, ``vxd_id`` and ``pull``, the sensor's difference over its error, None if
      neither varies), each with ``pool``, ``pool_error``, ``reference``,
      ``reference_error`` (mean fractions of fired pixels, standard errors over events),
      ``ratio`` and ``ratio_error`` (None where the reference is 0).
    * ``distributions``: per name of :data:`DISTRIBUTIONS`: ``label``, ``unit``,
      ``pool_mean``, ``pool_mean_error``, ``reference_mean``, ``reference_mean_error``,
      ``pool_entries``, ``reference_entries``, ``ks`` and ``wasserstein_1`` (distances;
      None without entries), ``bin_edges``, ``pool_histogram``, ``reference_histogram``
      (normalised) and ``overflow``.
    * ``correlation``: ``pool``, ``reference`` (40 lists of 40; None where a sensor never
      varies), ``pool_mean_off_diagonal``, ``reference_mean_off_diagonal``,
      ``max_abs_delta``, ``max_abs_delta_sensors``, ``mean_abs_delta``,
      ``mean_abs_delta_from_sampling`` and ``pull`` (40 lists of 40 Fisher-z pulls).
    * ``tests``: per name of :data:`QUANTITIES`, in that order, one test's result
      (:func:`bgcache.significance.outcome`: ``test``, ``label``, ``statistic``, ``ndf``,
      ``p_value``, ``sigma``, ``compatible``, ``verdict`` and the test's details):
      ``occupancy``, ``occupancy_layer_1``, ``occupancy_layer_2`` a z test of the means;
      ``occupancy_per_sensor`` a chi2 of the 40 pulls, scaled for their correlation;
      ``hits_per_event``, ``clusters_per_event`` a two-sample KS test; ``charge`` and the
      four ``cluster_*`` spectra a chi2 test of homogeneity divided by its design effect;
      ``correlation`` a chi2 of the pairs' Fisher-z pulls, with ``beyond_3_sigma`` and
      ``expected_beyond_3_sigma``.
    * ``verdict``: the global verdict (:func:`bgcache.significance.overall_verdict`):
      ``compatible`` (True only if every tested quantity is), ``differing``,
      ``p_value`` (Bonferroni over the quantities), ``sigma``, ``verdict`` (a sentence)...

    A gate reads ``report["verdict"]["compatible"]``, or ``compatible`` of the tests it
    cares about (e.g. ``report["tests"]["charge"]["compatible"]``).

    Raises:
        UsageError: statistics without clusters, or without events.
        MissingDependencyError: scipy is not installed.

    Example:
        >>> from bgcache.models.synthetic import load_synthetic
        >>> gen = load_synthetic()
        >>> a = PoolStatistics(clusters=True).add_events(gen.events([(0, i) for i in range(3)]))
        >>> b = PoolStatistics(clusters=True).add_events(gen.events([(1, i) for i in range(3)]))
        >>> r = compare_statistics(a, b)
        >>> 0.9 < r["occupancy"]["overall"]["ratio"] < 1.1, r["distributions"]["charge"]["ks"] < 0.01
        (True, True)
        >>> r["tests"]["charge"]["test"], r["tests"]["charge"]["verdict"]
        ('chi2_homogeneity', 'compatible')
    """
    if pool.clusters is None or reference.clusters is None:
        raise UsageError("compare needs statistics gathered with clusters=True")
    if not pool.n_events or not reference.n_events:
        raise UsageError("compare needs events on both sides")
    pc, rc = pool.clusters, reference.clusters
    distributions = {
        "hits_per_event": _sample_entry(pool.hits_per_event, reference.hits_per_event),
        "clusters_per_event": _sample_entry(pc.clusters_per_event, rc.clusters_per_event),
        "charge": _histogram_entry(pool.charge_histogram, reference.charge_histogram),
        "cluster_size": _histogram_entry(pc.size, rc.size),
        "cluster_charge": _histogram_entry(pc.charge, rc.charge),
        "cluster_extent_u": _histogram_entry(pc.extent_u, rc.extent_u),
        "cluster_extent_v": _histogram_entry(pc.extent_v, rc.extent_v),
    }
    for name, entry in distributions.items():
        entry["label"], entry["unit"] = DISTRIBUTIONS[name]
    report: dict[str, Any] = {
        "n_events": {"pool": pool.n_events, "reference": reference.n_events},
        "occupancy": _occupancy(pool, reference),
        "distributions": distributions,
        "correlation": _correlation(pool, reference),
    }
    report["tests"] = _tests(pool, reference, report)
    report["verdict"] = overall_verdict(report["tests"])
    return report


def _describe(pool: Pool, sampled: int) -> dict[str, Any]:
    return {
        "url": pool.url,
        "model": pool.model,
        "imported": pool.imported,
        "physics_model": pool.physics_model,
        "untrained": pool.untrained,
        "events": len(pool),
        "sampled": sampled,
    }


def compare_pools(
    pool: str | Pool,
    reference: str | Pool,
    *,
    sample: int | None = DEFAULT_SAMPLE,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compare a pool with a reference pool on ``sample`` events of each (all if None or
    0); see the module docstring for the report.

    Raises:
        UsageError: a pool without complete events, or a negative sample.
        PoolNotFoundError, NotAPoolError, PoolFormatError: as when opening a pool.
        MissingDependencyError: scipy is not installed (before anything is read).
    """
    from bgcache.store.pool import open_pool

    require_scipy()  # said now, not after the samples are read
    if sample is not None and (
        isinstance(sample, bool) or not isinstance(sample, int) or sample < 0
    ):
        raise UsageError(f"sample must be an integer >= 0, got {sample!r}")
    opened = [p if isinstance(p, Pool) else open_pool(p) for p in (pool, reference)]
    for which, p in zip(("pool", "reference"), opened, strict=True):
        if not len(p):
            raise UsageError(f"{which} '{p.url}' holds no complete events: nothing to compare")
    n = sample or None
    stats = [gather(p, n, progress) for p in opened]
    report = compare_statistics(*stats)
    report["pool"] = _describe(opened[0], stats[0].n_events)
    report["reference"] = _describe(opened[1], stats[1].n_events)
    return report


#: Columns of :func:`format_report_table`.
REPORT_COLUMNS = (
    "quantity",
    "pool",
    "reference",
    "pool / reference",
    "KS",
    "W1",
    "test",
    "p-value",
    "verdict",
)


def _pm(value: float, error: float, digits: int) -> str:
    return f"{value:.{digits}f} ± {error:.{digits}f}"


def format_p_value(p: float | None) -> str:
    """A p-value for a table: three decimals, else two significant digits, ``< 1e-15``
    beyond :data:`~bgcache.significance.SIGMA_MAX`.

    Example:
        >>> format_p_value(0.2345), format_p_value(2.3e-7), format_p_value(0.0), format_p_value(None)
        ('0.234', '2.3e-07', '< 1e-15', '')
    """
    if p is None:
        return ""
    if p >= 1e-3:
        return f"{p:.3f}"
    return "< 1e-15" if significance(p) >= SIGMA_MAX else f"{p:.1e}"


def format_test(test: Mapping[str, Any]) -> tuple[str, str, str]:
    """A test's statistic, p-value and verdict as table cells.

    Example:
        >>> from bgcache.significance import z_test
        >>> format_test(z_test(1.05, 0.01, 1.0, 0.01))
        ('z = +3.54', '4.1e-04', 'differs at 3.5 sigma')
    """
    stat, ndf, kind = test["statistic"], test["ndf"], test["test"]
    if stat is None:
        cell = ""
    elif kind == "z":
        cell = f"z = {stat:+.2f}"
    elif kind == "ks_2samp":
        cell = f"KS, {test['method']}"
    else:
        cell = f"chi2/ndf = {_number(stat)}/{_number(ndf)}"
    return cell, format_p_value(test["p_value"]), test["verdict"]


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def format_report_table(report: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The summary rows of a report as text (:data:`REPORT_COLUMNS`): means with their
    standard errors, ratios with theirs, distances, and each quantity's test, p-value and
    verdict; the last row is the global verdict."""
    rows: list[tuple[str, ...]] = []
    occ, tests = report["occupancy"], report["tests"]
    parts = [("all sensors", occ["overall"], tests["occupancy"])]
    parts += [
        (f"layer {d['layer']}", d, tests[f"occupancy_layer_{d['layer']}"]) for d in occ["layers"]
    ]
    for name, d, test in parts:
        ratio = "" if d["ratio"] is None else _pm(d["ratio"], d["ratio_error"], 3)
        rows.append(
            (
                f"occupancy [%], {name}",
                _pm(100 * d["pool"], 100 * d["pool_error"], 4),
                _pm(100 * d["reference"], 100 * d["reference_error"], 4),
                ratio,
                "",
                "",
                *format_test(test),
            )
        )
    per_sensor = tests["occupancy_per_sensor"]
    rows.append(
        (
            f"occupancy, per sensor ({per_sensor['sensors']})",
            *("",) * 5,
            *format_test(per_sensor),
        )
    )
    for name, d in report["distributions"].items():
        digits = 1 if d["pool_mean"] >= 100 else 3
        mean_ratio, mean_error = ratio_with_error(
            d["pool_mean"], d["pool_mean_error"], d["reference_mean"], d["reference_mean_error"]
        )
        rows.append(
            (
                f"{d['label']} [{d['unit']}]",
                _pm(d["pool_mean"], d["pool_mean_error"], digits),
                _pm(d["reference_mean"], d["reference_mean_error"], digits),
                "" if mean_ratio is None or mean_error is None else _pm(mean_ratio, mean_error, 3),
                "" if d["ks"] is None else f"{d['ks']:.4f}",
                "" if d["wasserstein_1"] is None else f"{d['wasserstein_1']:.4g}",
                *format_test(tests[name]),
            )
        )
    c = report["correlation"]

    def rho(x: float | None) -> str:
        return "" if x is None else f"{x:+.3f}"

    rows.append(
        (
            "correlation: mean rho off the diagonal",
            rho(c["pool_mean_off_diagonal"]),
            rho(c["reference_mean_off_diagonal"]),
        )
        + ("",) * 6
    )
    if c["max_abs_delta"] is not None:
        a, b = c["max_abs_delta_sensors"]
        rows.append(
            (f"correlation: max |delta rho| ({a} x {b})", f"{c['max_abs_delta']:.3f}") + ("",) * 7
        )
        noise = c["mean_abs_delta_from_sampling"]
        rows.append(
            (
                "correlation: mean |delta rho|",
                f"{c['mean_abs_delta']:.3f}",
                "" if noise is None else f"{noise:.3f} (sampling alone)",
            )
            + ("",) * 6
        )
    t = tests["correlation"]
    rows.append(
        (
            f"correlation: Fisher-z pulls ({t['pairs']} pairs)",
            f"{t['beyond_3_sigma']} beyond 3 sigma",
            f"{t['expected_beyond_3_sigma']:.1f} by chance",
            "",
            "",
            "",
            *format_test(t),
        )
    )
    v = report["verdict"]
    overall = "not tested" if v["compatible"] is None else "compatible"
    if v["differing"]:
        overall = f"differs ({len(v['differing'])} of {v['quantities']})"
    rows.append(
        (f"all {v['quantities']} quantities (Bonferroni)",)
        + ("",) * 6
        + (format_p_value(v["p_value"]), overall)
    )
    return rows


__all__ = [
    "DEFAULT_SAMPLE",
    "DISTRIBUTIONS",
    "QUANTITIES",
    "REPORT_COLUMNS",
    "aligned",
    "compare_pools",
    "compare_statistics",
    "format_p_value",
    "format_report_table",
    "format_test",
    "gather",
]


def aligned(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    """Rows as lines of aligned columns (the first left-aligned, the others right-aligned),
    whatever the terminal's width: a report in a log reads the same as on a screen.

    Example:
        >>> aligned([("a", "1.5"), ("bb", "22")], ("name", "x"))
        ['name    x', 'a     1.5', 'bb     22']
    """
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)
        ).rstrip()
        for r in table
    ]
