"""Whether two samples differ beyond statistics: the tests, their p-values and verdicts.

This module owns the statistical tests of bgcache's comparisons (:mod:`bgcache.compare`) and
how a result is judged. Every p-value comes from ``scipy.stats`` (the ``compare`` extra:
``pip install 'bgcache[compare]'``, imported at the first test); what is computed here is
only what feeds it. Each test returns a plain dict (JSON-serialisable, see
:func:`outcome`): ``test``, ``statistic``, ``ndf``, ``p_value``, ``sigma``,
``compatible``, ``verdict`` and the test's own details.

The tests, and what each assumes:

* :func:`ks_test`: per-event quantities (hits or clusters per event): the two-sample
  Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``), exact up to 10,000 values a side,
  asymptotic above. Events are independent draws; the test assumes continuous distributions,
  so ties (counts are integers) make its p-value conservative (too large), never too small.
* :func:`homogeneity_test`: binned spectra of pixels or clusters, of which only histograms
  are kept: Pearson's chi2 test of homogeneity of the two histograms
  (``scipy.stats.chi2_contingency``) after merging adjacent bins until every expected count
  is at least 5. That test counts every pixel (cluster) as an independent draw, which they
  are not: the pixels of one event share its sensors' occupancies and spectra, those of one
  cluster its track. Per-pixel tests then overstate the significance. Testing per-event
  summaries instead would throw the spectra's shapes away, so the chi2 is divided by its
  design effect (Rao and Scott's first-order correction, J. Am. Stat. Assoc. 76 (1981) 221):
  the ratio of its expected value, measured with the events as the independent units (the
  spread of each bin over :data:`~bgcache.clusters.BATCHES` interleaved groups of events),
  to ``ndf``; clipped at 1 from below, so a design effect measured below 1 by chance never
  makes a test stricter. The corrected chi2 has the mean of a chi2 with ``ndf`` degrees of
  freedom; its p-value is ``scipy.stats.chi2.sf``. The effective sample size is the entries
  over the design effect.
* :func:`z_test`: two means with standard errors over events (the occupancy of all
  sensors or of a layer): ``z = (a - b) / sqrt(ea^2 + eb^2)``, normal p-value
  (``scipy.stats.norm.sf``): the central limit theorem over events.
* :func:`sensor_chi2_test`: a vector of means (the 40 sensors' occupancies) with their
  covariance over events: ``chi2 = sum of z_s^2`` with each sensor's own error. Sensors of one
  event are correlated, so that sum has mean ``n`` but variance ``2 tr(R^2)`` (``R``: the
  correlation matrix of the differences); it is matched to a scaled chi2 (Satterthwaite, or
  Box, Ann. Math. Stat. 25 (1954) 290): ``chi2 / c`` with ``c = tr(R^2) / tr(R)`` follows
  a chi2 with ``ndf = tr(R)^2 / tr(R^2)`` (``c = 1``, ``ndf = n`` for independent sensors).
* :func:`correlation_test`: two correlation matrices over events: Fisher's
  ``z = atanh(rho)`` is normal with variance ``1 / (n - 3)`` for ``n`` events (bivariate
  normal data), so ``(z_1 - z_2) / sqrt(1 / (n_1 - 3) + 1 / (n_2 - 3))`` is a standard
  normal pull for each pair; the test is ``chi2 = sum of pulls^2`` over the pairs with
  ``ndf`` = pairs, and it reports how many pulls exceed 3 beside how many chance alone gives
  (``pairs x 2 norm.sf(3)``, 2.1 of 780). Pulls of pairs sharing a sensor are correlated
  where the correlations themselves are large, which widens the chi2's spread beyond its
  ``ndf``'s.

The verdicts: a quantity *differs* when its p-value is below :data:`P_THRESHOLD` (0.001),
i.e. beyond :data:`SIGMA_THRESHOLD` (3.29 sigma, the two-sided Gaussian equivalent
``norm.isf(p / 2)``), else it is *compatible*. A comparison tests several quantities (the
40 sensors and 780 correlation pairs are each one test), so the global verdict is
compatible only when every quantity is; with ``m`` quantities, two samples of one
distribution come out "differs" somewhere with a probability of at most ``m x 0.001``
(Bonferroni; 1.2 % for the 12 of ``bgcache compare``), and the global p-value is
``min(1, m x p_min)``. Significances are given up to :data:`SIGMA_MAX` (8): beyond it,
p-values (below 1e-15) are at the resolution of the tests' double-precision arithmetic
(scipy's exact KS returns one minus its complement).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from bgcache.errors import MissingDependencyError, UsageError

#: A quantity differs when its p-value is below this.
P_THRESHOLD = 1e-3
#: The same threshold in Gaussian standard deviations (two-sided): 3.29.
SIGMA_THRESHOLD = NormalDist().inv_cdf(1 - P_THRESHOLD / 2)
#: Significances are reported up to this many sigma ("> 8 sigma").
SIGMA_MAX = 8.0
#: Bins are merged until each expected count of a chi2 test reaches this.
MIN_EXPECTED = 5.0
#: Samples up to this size a side get scipy's exact two-sample KS p-value.
KS_EXACT_MAX = 10_000


def _scipy_stats() -> Any:
    """``scipy.stats``, imported when first needed."""
    try:
        import scipy.stats
    except ImportError as exc:
        raise MissingDependencyError(
            f"comparing pools needs scipy, which cannot be imported ({exc}): "
            "pip install 'bgcache[compare]'"
        ) from exc
    return scipy.stats


def require_scipy() -> None:
    """Check that scipy can be imported (before long work that ends in a test).

    Raises:
        MissingDependencyError: it cannot, with the install hint.
    """
    _scipy_stats()


def significance(p_value: float) -> float:
    """The two-sided Gaussian significance of a p-value, ``norm.isf(p / 2)``, at most
    :data:`SIGMA_MAX`.

    Example:
        >>> round(significance(0.0027), 2), significance(1.0), significance(0.0)
        (3.0, 0.0, 8.0)
    """
    if not 0.0 <= p_value <= 1.0:
        raise UsageError(f"a p-value lies in [0, 1], got {p_value!r}")
    if p_value <= 0.0:
        return SIGMA_MAX
    return min(float(_scipy_stats().norm.isf(p_value / 2)), SIGMA_MAX)


def verdict(p_value: float | None) -> str:
    """``"compatible"``, ``"differs at N.N sigma"`` (or ``"> 8 sigma"``) or ``"not tested"``.

    Example:
        >>> verdict(0.2), verdict(1e-4), verdict(0.0), verdict(None)
        ('compatible', 'differs at 3.9 sigma', 'differs at > 8 sigma', 'not tested')
    """
    if p_value is None:
        return "not tested"
    if p_value >= P_THRESHOLD:
        return "compatible"
    return f"differs at {_sigma_text(significance(p_value))} sigma"


def _sigma_text(sigma: float) -> str:
    return f"> {SIGMA_MAX:g}" if sigma >= SIGMA_MAX else f"{sigma:.1f}"


def outcome(
    test: str, statistic: float | None, ndf: float | None, p_value: float | None, **details: Any
) -> dict[str, Any]:
    """One test's result as a plain dict.

    Keys: ``test`` (its name), ``statistic`` (KS D, z, or the chi2 after any correction),
    ``ndf`` (degrees of freedom of a chi2, else None), ``p_value``, ``sigma``
    (:func:`significance`), ``compatible`` (``p_value >= P_THRESHOLD``), ``verdict``
    (:func:`verdict`), then the details. Without a p-value (not enough data) the statistic,
    sigma and compatible are None and ``reason`` says why.

    Example:
        >>> r = outcome("z", 0.5, None, 0.617)
        >>> r["compatible"], r["verdict"], round(r["sigma"], 2)
        (True, 'compatible', 0.5)
    """
    p = None if p_value is None else float(p_value)
    return {
        "test": test,
        "statistic": None if statistic is None else float(statistic),
        "ndf": None if ndf is None else float(ndf),
        "p_value": p,
        "sigma": None if p is None else significance(p),
        "compatible": None if p is None else p >= P_THRESHOLD,
        "verdict": verdict(p),
        **details,
    }


def _not_tested(test: str, reason: str, **details: Any) -> dict[str, Any]:
    return outcome(test, None, None, None, reason=reason, **details)


def ks_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Two-sample Kolmogorov-Smirnov test of per-event values (``scipy.stats.ks_2samp``).

    Details: ``method`` (``"exact"`` up to :data:`KS_EXACT_MAX` values a side, else
    ``"asymptotic"``; scipy falls back to asymptotic where its exact computation fails).

    Example:
        >>> r = ks_test(np.arange(50), np.arange(50) + 0.5)
        >>> r["test"], r["method"], round(r["statistic"], 2), r["verdict"]
        ('ks_2samp', 'exact', 0.02, 'compatible')
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not a.size or not b.size:
        return _not_tested("ks_2samp", "no events on one side")
    method = "exact" if max(a.size, b.size) <= KS_EXACT_MAX else "asymp"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _scipy_stats().ks_2samp(a, b, method=method)
    if any("Switching to" in str(w.message) for w in caught):
        method = "asymp"
    return outcome(
        "ks_2samp",
        float(result.statistic),
        None,
        float(result.pvalue),
        method="exact" if method == "exact" else "asymptotic",
    )


def _merge_starts(column: np.ndarray, need: float) -> np.ndarray:
    """First bin of each group of adjacent bins, merged left to right until a group's
    total reaches ``need``; a short remainder joins the last group."""
    starts = [0]
    total = 0.0
    for i, count in enumerate(column.tolist()):
        if total >= need:
            starts.append(i)
            total = 0.0
        total += count
    if total < need and len(starts) > 1:
        starts.pop()
    return np.asarray(starts, dtype=np.intp)


def proportion_variance(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """The variance of each bin's fraction of entries, with groups of events as the
    independent units: ``G / (G - 1) * sum_g (n_gb - p_b N_g)^2 / N^2`` over the ``G``
    groups holding entries (``N_g`` entries of ``N``, ``p_b`` the fraction in bin ``b``),
    and ``G``.

    For entries drawn independently its mean is ``p_b (1 - p_b) / N`` (multinomial); where
    the entries of one event move together, it is larger.

    Example:
        >>> v, g = proportion_variance(np.array([[3, 1], [1, 3]]))
        >>> v.tolist(), g
        ([0.0625, 0.0625], 2)
    """
    counts = np.asarray(groups, dtype=np.float64)
    per_group = counts.sum(axis=1)
    counts = counts[per_group > 0]
    per_group = per_group[per_group > 0]
    n_groups = int(per_group.shape[0])
    total = float(per_group.sum())
    if n_groups < 2:
        return np.zeros(counts.shape[1]), n_groups
    fraction = counts.sum(axis=0) / total
    residual = counts - per_group[:, None] * fraction
    variance: np.ndarray = n_groups / (n_groups - 1) * (residual * residual).sum(axis=0) / total**2
    return variance, n_groups


def homogeneity_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Chi2 test of homogeneity of two histograms kept in groups of events, corrected for
    the correlation of entries within events (see the module docstring).

    Args:
        a, b: counts per group of events and bin (``groups x bins``; a 1-d histogram is one
            group, whose design effect cannot be measured and is taken as 1).

    Details: ``chi2_uncorrected`` (from ``scipy.stats.chi2_contingency``), ``design_effect``
    (what it was divided by), ``design_effect_measured`` (False with fewer than 2 groups of
    events a side), ``bins`` (after merging), ``entries`` (both sides), ``effective_entries``
    (entries over the design effect).

    Example:
        >>> a = np.array([[40, 30, 30], [35, 35, 30]])
        >>> r = homogeneity_test(a, a[::-1] + 1)
        >>> r["test"], r["ndf"], r["bins"], r["verdict"]
        ('chi2_homogeneity', 2.0, 3, 'compatible')
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.int64))
    b = np.atleast_2d(np.asarray(b, dtype=np.int64))
    if a.shape[1] != b.shape[1]:
        raise UsageError(f"histograms of {a.shape[1]} and {b.shape[1]} bins cannot be compared")
    name = "chi2_homogeneity"
    na, nb = int(a.sum()), int(b.sum())
    entries = [na, nb]
    if not na or not nb:
        return _not_tested(name, "no entries on one side", entries=entries)
    n = na + nb
    column = a.sum(axis=0) + b.sum(axis=0)
    starts = _merge_starts(column, MIN_EXPECTED * n / min(na, nb))
    if starts.shape[0] < 2:
        return _not_tested(
            name, f"fewer than 2 bins with expected counts >= {MIN_EXPECTED:g}", entries=entries
        )
    ga, gb = np.add.reduceat(a, starts, axis=1), np.add.reduceat(b, starts, axis=1)
    table = np.stack([ga.sum(axis=0), gb.sum(axis=0)])
    stats = _scipy_stats()
    result = stats.chi2_contingency(table, correction=False)
    chi2, ndf = float(result.statistic), int(result.dof)
    va, groups_a = proportion_variance(ga)
    vb, groups_b = proportion_variance(gb)
    measured = min(groups_a, groups_b) >= 2
    deff = 1.0
    if measured:
        pooled = table.sum(axis=0) / n
        deff = max(float(na * nb / n * ((va + vb) / pooled).sum()) / ndf, 1.0)
    corrected = chi2 / deff
    return outcome(
        name,
        corrected,
        ndf,
        float(stats.chi2.sf(corrected, ndf)),
        chi2_uncorrected=chi2,
        design_effect=deff,
        design_effect_measured=measured,
        bins=int(starts.shape[0]),
        entries=entries,
        effective_entries=[na / deff, nb / deff],
    )


def z_test(a: float, a_error: float, b: float, b_error: float) -> dict[str, Any]:
    """Two means with their standard errors: ``z`` and its two-sided normal p-value.

    Example:
        >>> r = z_test(1.05, 0.01, 1.0, 0.01)
        >>> round(r["statistic"], 3), r["verdict"]
        (3.536, 'differs at 3.5 sigma')
    """
    error = float(np.hypot(a_error, b_error))
    if not error > 0:
        return _not_tested("z", "no spread over events (fewer than 2 events a side?)")
    z = (a - b) / error
    return outcome("z", z, None, 2 * float(_scipy_stats().norm.sf(abs(z))))


def sensor_chi2_test(difference: np.ndarray, covariance: np.ndarray) -> dict[str, Any]:
    """The chi2 of per-sensor differences with their own errors, matched to a scaled chi2
    for their correlation (see the module docstring).

    Args:
        difference: the differences of the means (one per sensor).
        covariance: their covariance (``C_a / n_a + C_b / n_b``); sensors with no variance
            are left out.

    Details: ``chi2`` (the plain sum of pulls^2), ``sensors`` (those tested), ``scale``
    (``c``; ``statistic`` is ``chi2 / c``), ``pulls`` (per sensor; None where left out).

    Example:
        >>> r = sensor_chi2_test(np.array([0.1, -0.2, 0.1]), np.eye(3) * 0.01)
        >>> round(r["chi2"], 6), round(r["ndf"], 6), round(r["scale"], 6), r["verdict"]
        (6.0, 3.0, 1.0, 'compatible')
    """
    d = np.asarray(difference, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    var = np.diag(cov)
    ok = var > 0
    pulls: list[float | None] = [None] * d.shape[0]
    if not ok.any():
        return _not_tested("chi2_sensors", "no sensor varies over events", sensors=0, pulls=pulls)
    sigma = np.sqrt(var[ok])
    z = d[ok] / sigma
    for index, pull in zip(np.flatnonzero(ok).tolist(), z.tolist(), strict=True):
        pulls[index] = pull
    rho = cov[np.ix_(ok, ok)] / np.outer(sigma, sigma)
    trace, trace_sq = float(np.trace(rho)), float((rho * rho).sum())
    scale, ndf = trace_sq / trace, trace * trace / trace_sq
    chi2 = float(z @ z)
    return outcome(
        "chi2_sensors",
        chi2 / scale,
        ndf,
        float(_scipy_stats().chi2.sf(chi2 / scale, ndf)),
        chi2=chi2,
        sensors=int(ok.sum()),
        scale=scale,
        pulls=pulls,
    )


#: |pull| beyond which a correlation pair is counted.
PAIR_PULL = 3.0


def correlation_test(
    rho_a: np.ndarray, rho_b: np.ndarray, n_a: int, n_b: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Fisher-z pulls of two correlation matrices over ``n_a`` and ``n_b`` events, and
    their chi2 over the pairs above the diagonal where both are finite.

    Returns:
        The test (details: ``sigma_delta_z``, the noise of each ``z_a - z_b``; ``pairs``;
        ``beyond_3_sigma``, the pairs with ``|pull| > 3``; ``expected_beyond_3_sigma``, how
        many chance alone gives; ``max_abs_pull`` and its ``max_abs_pull_pair`` of indices)
        and the matrix of pulls (NaN on the diagonal and where a rho is not finite).

    Example:
        >>> a = np.array([[1.0, 0.5], [0.5, 1.0]])
        >>> r, pulls = correlation_test(a, np.eye(2), 103, 103)
        >>> r["pairs"], round(r["sigma_delta_z"], 4), round(float(pulls[0, 1]), 2), r["verdict"]
        (1, 0.1414, 3.88, 'differs at 3.9 sigma')
    """
    ra, rb = np.asarray(rho_a, dtype=np.float64), np.asarray(rho_b, dtype=np.float64)
    pulls = np.full(ra.shape, np.nan)
    name = "chi2_fisher_z"
    details: dict[str, Any] = {
        "sigma_delta_z": None,
        "pairs": 0,
        "beyond_3_sigma": 0,
        "expected_beyond_3_sigma": 0.0,
        "max_abs_pull": None,
        "max_abs_pull_pair": None,
    }
    if min(n_a, n_b) <= 3:
        return _not_tested(name, "Fisher's z needs more than 3 events a side", **details), pulls
    sigma = float(np.sqrt(1 / (n_a - 3) + 1 / (n_b - 3)))
    limit = 1 - 1e-12  # |rho| = 1 has no finite z
    with np.errstate(invalid="ignore"):
        za = np.arctanh(np.clip(ra, -limit, limit))
        zb = np.arctanh(np.clip(rb, -limit, limit))
    upper = np.triu(np.ones(ra.shape, dtype=bool), 1) & np.isfinite(za) & np.isfinite(zb)
    both = upper | upper.T
    pulls[both] = ((za - zb) / sigma)[both]
    values = pulls[upper]
    stats = _scipy_stats()
    details |= {
        "sigma_delta_z": sigma,
        "pairs": int(values.shape[0]),
        "beyond_3_sigma": int((np.abs(values) > PAIR_PULL).sum()),
        "expected_beyond_3_sigma": float(values.shape[0] * 2 * stats.norm.sf(PAIR_PULL)),
    }
    if not values.size:
        return _not_tested(name, "no pair of sensors varies on both sides", **details), pulls
    i, j = np.unravel_index(int(np.nanargmax(np.where(upper, np.abs(pulls), -1.0))), ra.shape)
    details["max_abs_pull"] = float(abs(pulls[i, j]))
    details["max_abs_pull_pair"] = [int(i), int(j)]
    chi2 = float(values @ values)
    ndf = int(values.shape[0])
    return outcome(name, chi2, ndf, float(stats.chi2.sf(chi2, ndf)), **details), pulls


def overall_verdict(tests: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The global verdict over several tests (see the module docstring).

    Returns:
        ``compatible`` (every tested quantity is), ``quantities`` (tested), ``differing``
        (their names), ``p_value_min`` and ``smallest`` (its name), ``p_value``
        (Bonferroni: ``min(1, m x p_min)``), ``sigma``, ``p_threshold``,
        ``sigma_threshold``, ``family_false_alarm`` (``m x p_threshold``, the most often two
        samples of one distribution would come out "differs") and ``verdict`` (a sentence,
        naming each test by its ``label`` where it has one).

    Example:
        >>> v = overall_verdict({"a": outcome("z", 0.1, None, 0.9),
        ...                      "b": outcome("z", 4.0, None, 6e-5)})
        >>> v["compatible"], v["differing"], round(v["p_value"], 6)
        (False, ['b'], 0.00012)
    """
    tested = {k: t for k, t in tests.items() if t.get("p_value") is not None}
    m = len(tested)
    out: dict[str, Any] = {
        "compatible": None,
        "quantities": m,
        "differing": [],
        "p_value_min": None,
        "smallest": None,
        "p_value": None,
        "sigma": None,
        "p_threshold": P_THRESHOLD,
        "sigma_threshold": SIGMA_THRESHOLD,
        "family_false_alarm": min(1.0, m * P_THRESHOLD),
        "verdict": "not tested",
    }
    if not m:
        return out
    smallest = min(tested, key=lambda k: float(tested[k]["p_value"]))
    p_min = float(tested[smallest]["p_value"])
    differing = [k for k, t in tested.items() if not t["compatible"]]
    p_global = min(1.0, m * p_min)
    out |= {
        "compatible": not differing,
        "differing": differing,
        "p_value_min": p_min,
        "smallest": smallest,
        "p_value": p_global,
        "sigma": significance(p_global),
    }

    def name(key: str) -> str:
        return str(tested[key].get("label", key))

    if differing:
        which = "; ".join(
            f"{name(k)} at {_sigma_text(t['sigma'])} sigma"
            for k, t in tested.items()
            if not t["compatible"]
        )
        out["verdict"] = (
            f"differs: {len(differing)} of {m} quantities beyond {SIGMA_THRESHOLD:.2f} sigma "
            f"({which})"
        )
    else:
        out["verdict"] = (
            f"compatible: none of {m} quantities beyond {SIGMA_THRESHOLD:.2f} sigma "
            f"(smallest p = {p_min:.2g}, {name(smallest)}; times {m} tests: {p_global:.2g})"
        )
    return out


__all__ = [
    "KS_EXACT_MAX",
    "MIN_EXPECTED",
    "PAIR_PULL",
    "P_THRESHOLD",
    "SIGMA_MAX",
    "SIGMA_THRESHOLD",
    "correlation_test",
    "homogeneity_test",
    "ks_test",
    "outcome",
    "overall_verdict",
    "proportion_variance",
    "require_scipy",
    "sensor_chi2_test",
    "significance",
    "verdict",
    "z_test",
]
