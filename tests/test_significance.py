"""bgcache.significance: each test's p-value against scipy.stats computed here directly, the
design effect on correlated entries, the scaled chi2 of correlated sensors, the verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bgcache.errors import UsageError
from bgcache.significance import (
    P_THRESHOLD,
    SIGMA_MAX,
    SIGMA_THRESHOLD,
    correlation_test,
    homogeneity_test,
    ks_test,
    outcome,
    overall_verdict,
    proportion_variance,
    sensor_chi2_test,
    significance,
    verdict,
    z_test,
)


def test_ks_is_scipys_exact_or_asymptotic_test() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 30), rng.normal(0.8, 1, 45)
    r = ks_test(a, b)
    want = stats.ks_2samp(a, b, method="exact")
    assert r["method"] == "exact"
    assert r["statistic"] == pytest.approx(want.statistic)
    assert r["p_value"] == pytest.approx(want.pvalue, rel=1e-12)
    big = rng.normal(0, 1, 10_001)
    r = ks_test(big, big + 0.01)
    assert r["method"] == "asymptotic"
    assert r["p_value"] == pytest.approx(stats.ks_2samp(big, big + 0.01, method="asymp").pvalue)
    assert ks_test(a, np.zeros(0))["verdict"] == "not tested"


def test_chi2_without_merging_is_chi2_contingency() -> None:
    a, b = np.array([50, 80, 120, 40]), np.array([60, 70, 130, 30])
    r = homogeneity_test(a, b)  # one group a side: the design effect cannot be measured
    want = stats.chi2_contingency(np.stack([a, b]), correction=False)
    assert (r["bins"], r["ndf"], r["design_effect"], r["design_effect_measured"]) == (
        4,
        3.0,
        1.0,
        False,
    )
    assert r["statistic"] == pytest.approx(want.statistic)
    assert r["p_value"] == pytest.approx(want.pvalue)


def test_bins_are_merged_until_expected_counts_reach_5() -> None:
    # a sparse tail: bins 3.. hold too few entries for the chi2's approximation
    a = np.array([100, 90, 60, 3, 2, 1, 1, 0, 1])
    b = np.array([110, 80, 70, 1, 3, 2, 0, 1, 0])
    r = homogeneity_test(a, b)
    merged = np.stack([np.r_[a[:3], a[3:].sum()], np.r_[b[:3], b[3:].sum()]])
    want = stats.chi2_contingency(merged, correction=False)
    assert stats.contingency.expected_freq(merged).min() >= 5
    assert (r["bins"], r["ndf"]) == (4, 3.0)
    assert r["statistic"] == pytest.approx(want.statistic)
    assert r["p_value"] == pytest.approx(want.pvalue)
    assert homogeneity_test(a, np.zeros_like(b))["reason"] == "no entries on one side"
    with pytest.raises(UsageError, match="histograms of 9 and 3 bins"):
        homogeneity_test(a, b[:3])


def clustered_histograms(
    rng: np.random.Generator, p: np.ndarray, groups: int, events: int, copies: int
) -> np.ndarray:
    """``groups x bins`` counts of events whose entries come in clusters of ``copies``
    identical values (as the pixels of one cluster share its charge)."""
    out = np.zeros((groups, p.size), dtype=np.int64)
    for g in range(groups):
        for _ in range(events):
            out[g] += copies * rng.multinomial(rng.poisson(40), p)
    return out


def test_the_design_effect_makes_correlated_entries_count_as_what_they_are_worth() -> None:
    rng = np.random.default_rng(5)
    p = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    plain = []
    corrected = []
    for _ in range(150):  # two samples of one distribution, every entry counted 4 times
        r = homogeneity_test(
            clustered_histograms(rng, p, 16, 2, 4), clustered_histograms(rng, p, 16, 2, 4)
        )
        plain.append(stats.chi2.sf(r["chi2_uncorrected"], r["ndf"]))
        corrected.append(r["p_value"])
        assert 2 < r["design_effect"] < 7  # 4 in expectation
    # the plain chi2 treats the copies as independent: it "finds" differences that are not
    # there; the corrected test is as often below 0.05 as a p-value should be
    assert np.mean(np.array(plain) < 0.05) > 0.3
    assert 0.01 <= np.mean(np.array(corrected) < 0.05) <= 0.12
    # duplicating every count changes nothing after the correction
    a, b = clustered_histograms(rng, p, 16, 2, 4), clustered_histograms(rng, p, 16, 2, 4)
    once, twice = homogeneity_test(a, b), homogeneity_test(2 * a, 2 * b)
    assert twice["chi2_uncorrected"] == pytest.approx(2 * once["chi2_uncorrected"])
    assert twice["statistic"] == pytest.approx(once["statistic"])
    assert twice["p_value"] == pytest.approx(once["p_value"])


def test_independent_entries_have_a_design_effect_near_1() -> None:
    rng = np.random.default_rng(2)
    p = np.array([0.5, 0.3, 0.2])
    effects = [
        homogeneity_test(
            clustered_histograms(rng, p, 32, 3, 1), clustered_histograms(rng, p, 32, 3, 1)
        )["design_effect"]
        for _ in range(20)
    ]
    assert min(effects) == 1.0  # clipped: measured below 1 by chance
    assert max(effects) < 1.5


def test_proportion_variance_of_multinomial_groups_is_the_binomial_one() -> None:
    rng = np.random.default_rng(3)
    p = np.array([0.6, 0.3, 0.1])
    groups = np.stack([rng.multinomial(2000, p) for _ in range(400)])
    variance, n = proportion_variance(groups)
    assert n == 400
    assert variance == pytest.approx(p * (1 - p) / groups.sum(), rel=0.2)


def test_z_and_sensor_chi2_are_scipys() -> None:
    r = z_test(1.0, 0.02, 0.95, 0.015)
    z = 0.05 / math.hypot(0.02, 0.015)
    assert r["statistic"] == pytest.approx(z)
    assert r["p_value"] == pytest.approx(2 * stats.norm.sf(z))
    assert z_test(1.0, 0.0, 1.0, 0.0)["verdict"] == "not tested"
    # independent sensors: a plain chi2 with one degree of freedom per sensor
    d = np.array([0.3, -0.1, 0.25, 0.0, -0.2])
    var = np.array([0.01, 0.02, 0.01, 0.03, 0.02])
    r = sensor_chi2_test(d, np.diag(var))
    chi2 = float((d * d / var).sum())
    assert (r["scale"], r["ndf"]) == pytest.approx((1.0, 5.0))
    assert r["p_value"] == pytest.approx(stats.chi2.sf(chi2, 5))
    assert r["pulls"] == pytest.approx((d / np.sqrt(var)).tolist())
    # two sensors that always move together are one measurement, not two
    r = sensor_chi2_test(np.array([0.3, 0.3]), np.full((2, 2), 0.01))
    assert (r["scale"], r["ndf"]) == pytest.approx((2.0, 1.0))
    assert r["p_value"] == pytest.approx(z_test(0.3, 0.1, 0.0, 0.0)["p_value"])
    # a sensor that never varies on either side is left out
    r = sensor_chi2_test(np.array([0.3, 0.0]), np.diag([0.01, 0.0]))
    assert (r["sensors"], r["pulls"][1]) == (1, None)


def test_correlation_pulls_are_fishers_z() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 6))
    y = rng.normal(size=(200, 6))
    y[:, 1] += y[:, 0]  # one pair correlated on one side only
    ra, rb = np.corrcoef(x, rowvar=False), np.corrcoef(y, rowvar=False)
    ra[2, :] = ra[:, 2] = np.nan  # a sensor that never varies
    r, pulls = correlation_test(ra, rb, 300, 200)
    sigma = math.sqrt(1 / 297 + 1 / 197)
    assert r["sigma_delta_z"] == pytest.approx(sigma)
    iu = np.triu_indices(6, 1)
    want = np.full((6, 6), np.nan)
    want[iu] = (np.arctanh(ra[iu]) - np.arctanh(rb[iu])) / sigma
    finite = np.isfinite(want[iu])
    assert r["pairs"] == 10 == int(finite.sum())
    assert np.allclose(pulls[iu][finite], want[iu][finite])
    assert np.isnan(np.diag(pulls)).all() and np.isnan(pulls[2]).all()
    assert r["beyond_3_sigma"] == int((np.abs(want[iu][finite]) > 3).sum()) >= 1
    assert r["max_abs_pull_pair"] == [0, 1]
    chi2 = float((want[iu][finite] ** 2).sum())
    assert r["p_value"] == pytest.approx(stats.chi2.sf(chi2, 10))
    assert r["expected_beyond_3_sigma"] == pytest.approx(10 * 2 * stats.norm.sf(3))
    assert r["verdict"].startswith("differs at")
    assert correlation_test(ra, rb, 3, 200)[0]["verdict"] == "not tested"


def test_significance_verdict_and_the_global_verdict() -> None:
    assert stats.norm.isf(P_THRESHOLD / 2) == pytest.approx(SIGMA_THRESHOLD)
    assert significance(0.05) == pytest.approx(stats.norm.isf(0.025))
    assert significance(1e-300) == SIGMA_MAX
    assert verdict(P_THRESHOLD) == "compatible"
    assert verdict(0.999 * P_THRESHOLD) == "differs at 3.3 sigma"
    with pytest.raises(UsageError, match="a p-value lies in"):
        significance(1.5)
    tests = {
        "a": outcome("z", 1.0, None, 0.3) | {"label": "quantity a"},
        "b": outcome("z", 3.0, None, 0.02),
        "c": outcome("z", None, None, None, reason="no events"),
    }
    v = overall_verdict(tests)
    assert (v["compatible"], v["quantities"], v["smallest"]) == (True, 2, "b")
    assert v["p_value"] == pytest.approx(0.04)  # Bonferroni: 2 tests
    assert v["family_false_alarm"] == pytest.approx(2 * P_THRESHOLD)
    assert v["verdict"].startswith("compatible: none of 2 quantities beyond 3.29 sigma")
    tests["a"] = outcome("z", 9.0, None, 0.0) | {"label": "quantity a"}
    v = overall_verdict(tests)
    assert (v["compatible"], v["differing"]) == (False, ["a"])
    assert v["verdict"] == (
        "differs: 1 of 2 quantities beyond 3.29 sigma (quantity a at > 8 sigma)"
    )
    assert overall_verdict({})["compatible"] is None
