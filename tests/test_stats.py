"""Tests of bgcache.stats: exact counts, merging, empty statistics, reference agreement."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import bgcache
from bgcache.errors import EventError, UsageError
from bgcache.geometry import N_SENSORS, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.models.synthetic import load_reference
from bgcache.stats import (
    COMPARISON_COLUMNS,
    N_CHARGE_BINS,
    PoolStatistics,
    compare_with_reference,
    format_comparison_table,
    ks_statistic,
    reference_charge_spectrum,
)

# Two hand-made events: sensor, u, v, charge (sorted by sensor, u, v).
EVENT_A = SparseEvent([0, 0, 5, 39], [0, 0, 10, 249], [0, 1, 3, 767], [10, 20, 7, 255])
EVENT_B = SparseEvent([0, 16, 16], [4, 0, 0], [4, 0, 9], [30, 8, 8])


@pytest.fixture(scope="module")
def synthetic_events() -> list[SparseEvent]:
    return bgcache.load_model("synthetic").events([(0, i) for i in range(20)])


@pytest.fixture(scope="module")
def synthetic_comparison(synthetic_events: list[SparseEvent]) -> dict[str, Any]:
    return compare_with_reference(PoolStatistics().add_events(synthetic_events))


def _with_charges(events: list[SparseEvent], fn: Any) -> list[SparseEvent]:
    out = []
    for ev in events:
        q = np.clip(fn(ev.charge.astype(np.int64)), 1, 255).astype(np.uint8)
        out.append(SparseEvent(ev.sensor, ev.u, ev.v, q, validate=False))
    return out


# -- exact counts ---------------------------------------------------------------------
def test_exact_counts_of_hand_made_events() -> None:
    stats = PoolStatistics().add_events([EVENT_A, EVENT_B])
    assert stats.n_events == 2
    assert stats.n_hits == 7
    assert stats.hits_per_event.tolist() == [4, 3]
    expected_hits = np.zeros(N_SENSORS, np.int64)
    expected_hits[[0, 5, 16, 39]] = [3, 1, 2, 1]
    np.testing.assert_array_equal(stats.hits_per_sensor, expected_hits)
    expected_sum = np.zeros(N_SENSORS, np.int64)
    expected_sum[[0, 5, 16, 39]] = [60, 7, 16, 255]
    np.testing.assert_array_equal(stats.charge_sum_per_sensor, expected_sum)
    hist = np.zeros(N_CHARGE_BINS, np.int64)
    for q in (10, 20, 7, 255, 30, 8, 8):
        hist[q] += 1
    np.testing.assert_array_equal(stats.charge_histogram, hist)

    np.testing.assert_array_equal(
        stats.occupancy_per_sensor(), expected_hits / (2 * PIXELS_PER_SENSOR)
    )
    assert stats.occupancy() == pytest.approx(7 / (2 * N_SENSORS * PIXELS_PER_SENSOR))
    assert stats.occupancy(1) == pytest.approx(4 / (2 * 16 * PIXELS_PER_SENSOR))
    assert stats.occupancy(2) == pytest.approx(3 / (2 * 24 * PIXELS_PER_SENSOR))
    mean = stats.mean_charge_per_sensor()
    assert mean[[0, 5, 16, 39]].tolist() == [20.0, 7.0, 8.0, 255.0]
    assert mean[1] == 0.0
    assert stats.mean_charge() == pytest.approx(338 / 7)
    assert stats.mean_charge(1) == pytest.approx(67 / 4)
    assert stats.charge_spectrum()[8] == pytest.approx(2 / 7)
    assert stats.charge_spectrum().sum() == pytest.approx(1.0)
    assert stats.hits_summary() == {"mean": 3.5, "std": 0.5, "min": 3.0, "max": 4.0}


def test_charges_above_255_count_in_last_bin_and_in_full_in_sums() -> None:
    merged = bgcache.merge(SparseEvent([2], [0], [0], [250]), SparseEvent([2], [0], [0], [30]))
    stats = PoolStatistics().add_events([merged])
    assert stats.charge_histogram[255] == 1
    assert stats.charge_sum_per_sensor[2] == 280


def test_empty_event_counts_as_an_event() -> None:
    stats = PoolStatistics().add_events([SparseEvent.empty(), EVENT_B])
    assert stats.n_events == 2
    assert stats.hits_per_event.tolist() == [0, 3]


def test_bad_sensor_index_is_rejected_and_nothing_is_counted() -> None:
    bad = SparseEvent(
        np.array([40], np.uint8),
        np.zeros(1, np.uint16),
        np.zeros(1, np.uint16),
        np.ones(1, np.uint8),
        validate=False,
    )
    stats = PoolStatistics()
    with pytest.raises(EventError, match="sensor index out of range"):
        stats.add(bad)
    assert stats == PoolStatistics()


# -- merge ----------------------------------------------------------------------------
def test_merge_equals_adding_all(synthetic_events: list[SparseEvent]) -> None:
    events = [*synthetic_events[:5], EVENT_A, EVENT_B]
    whole = PoolStatistics().add_events(events)
    parts = [PoolStatistics().add_events(events[i::3]) for i in range(3)]
    merged = PoolStatistics()
    for part in parts:
        merged.merge(part)
    # Merging keeps the order of the parts' hits per event, not of the events overall.
    assert sorted(merged.hits_per_event.tolist()) == sorted(whole.hits_per_event.tolist())
    reordered = PoolStatistics().add_events([e for i in range(3) for e in events[i::3]])
    assert merged == reordered
    assert merged.to_dict() == whole.to_dict()


def test_merge_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="PoolStatistics"):
        PoolStatistics().merge({})  # type: ignore[arg-type]


# -- empty statistics -----------------------------------------------------------------
def test_empty_statistics_are_defined_zeros() -> None:
    stats = PoolStatistics()  # warnings are errors: any division by zero would fail here
    assert stats.n_events == 0 and stats.n_hits == 0
    assert not stats.occupancy_per_sensor().any()
    assert not stats.mean_charge_per_sensor().any()
    assert not stats.charge_spectrum().any()
    assert stats.occupancy() == 0.0 and stats.mean_charge() == 0.0
    assert stats.hits_summary() == {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    c = compare_with_reference(stats)
    assert c["n_events"] == 0
    assert c["overall"]["occupancy"] == 0.0
    assert c["overall"]["occupancy_ratio"] == 0.0
    assert c["charge_spectrum"]["ks_statistic"] is None
    json.dumps(c, allow_nan=False)
    assert format_comparison_table(c)[-2:] == [
        ("charge spectrum KS distance", "", "0", ""),
        ("charge spectrum W1 distance [ADU]", "", "0", ""),
    ]
    assert c["overall"]["occupancy_error"] == 0.0


# -- serialisation --------------------------------------------------------------------
def test_to_dict_is_json_and_round_trips() -> None:
    stats = PoolStatistics().add_events([EVENT_A, EVENT_B])
    d = stats.to_dict(include_hits_per_event=True)
    again = json.loads(json.dumps(d, allow_nan=False))
    assert again["hits_per_event_list"] == [4, 3]
    assert again["n_hits"] == 7
    assert len(again["occupancy_per_sensor"]) == N_SENSORS
    assert PoolStatistics.from_dict(again) == stats
    assert "hits_per_event_list" not in stats.to_dict()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param(lambda d: d.pop("hits_per_event_list"), "lack the field", id="no-event-list"),
        pytest.param(lambda d: d.update(charge_histogram=[0] * 5), "256 values", id="short-hist"),
    ],
)
def test_from_dict_rejects_incomplete_data(change: Any, match: str) -> None:
    d = PoolStatistics().add_events([EVENT_A]).to_dict(include_hits_per_event=True)
    change(d)
    with pytest.raises(UsageError, match=match):
        PoolStatistics.from_dict(d)


def test_layer_must_be_1_or_2() -> None:
    with pytest.raises(UsageError, match="layer must be 1 or 2"):
        PoolStatistics().occupancy(3)


# -- reference ------------------------------------------------------------------------
def test_reference_spectrum_of_fired_pixels() -> None:
    ref = load_reference()
    p = reference_charge_spectrum(ref)
    assert p.shape == (N_CHARGE_BINS,)
    assert p.sum() == pytest.approx(1.0)
    assert not p[:7].any()
    counts = ref["charge_histogram"][2:]  # bins 7..255 (bin 0: zeros, bin 1: empty [1, 7))
    np.testing.assert_allclose(p[7:], counts / counts.sum())


def test_reference_spectrum_spreads_wide_bins() -> None:
    ref = {"charge_bin_edges": [-1.0, 1.0, 5.0, 6.0], "charge_histogram": [100.0, 4.0, 4.0]}
    p = reference_charge_spectrum(ref)
    np.testing.assert_allclose(p[:7], [0, 0.125, 0.125, 0.125, 0.125, 0.5, 0])


def test_reference_spectrum_rejects_mismatched_edges() -> None:
    with pytest.raises(UsageError, match="3 bins but 3 edges"):
        reference_charge_spectrum({"charge_bin_edges": [0, 1, 2], "charge_histogram": [1, 2, 3]})


def test_ks_statistic() -> None:
    assert ks_statistic(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    assert ks_statistic(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0


def test_comparison_structure(synthetic_comparison: dict[str, Any]) -> None:
    c = synthetic_comparison
    json.dumps(c, allow_nan=False)
    assert c["n_events"] == 20
    assert [s["index"] for s in c["sensors"]] == list(range(N_SENSORS))
    first, last = c["sensors"][0], c["sensors"][-1]
    assert (first["layer"], first["ladder"], first["sensor"], first["vxd_id"]) == (1, 1, 1, 8480)
    assert (last["layer"], last["ladder"], last["sensor"], last["vxd_id"]) == (2, 12, 2, 19520)
    assert [(d["layer"], d["first_sensor"], d["last_sensor"]) for d in c["layers"]] == [
        (1, 0, 15),
        (2, 16, 39),
    ]
    ref = load_reference()
    assert c["layers"][0]["reference_occupancy"] == pytest.approx(
        ref["occupancy_per_sensor"][:16].mean()
    )
    assert c["overall"]["reference_occupancy"] == pytest.approx(ref["occupancy_per_sensor"].mean())
    assert len(c["charge_spectrum"]["measured"]) == N_CHARGE_BINS
    assert c["charge_spectrum"]["reference_threshold"] == 7
    rows = format_comparison_table(c)
    assert all(len(row) == len(COMPARISON_COLUMNS) for row in rows)
    assert ("events", "20", "", "") in rows


def test_synthetic_events_agree_with_reference(synthetic_comparison: dict[str, Any]) -> None:
    c = synthetic_comparison
    for layer in c["layers"]:
        assert layer["occupancy_ratio"] == pytest.approx(1.0, abs=0.05), layer
        assert layer["mean_charge_ratio"] == pytest.approx(1.0, abs=0.02), layer
    for sensor in c["sensors"]:
        assert sensor["occupancy_ratio"] == pytest.approx(1.0, abs=0.15), sensor
        assert sensor["mean_charge_ratio"] == pytest.approx(1.0, abs=0.05), sensor
    assert c["overall"]["mean_charge"] == pytest.approx(
        c["overall"]["reference_mean_charge"], rel=0.02
    )
    assert c["charge_spectrum"]["ks_statistic"] < 0.02
    assert c["charge_spectrum"]["fraction_below_threshold"] == 0.0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda q: 2 * q, id="doubled"),
        pytest.param(lambda q: q + q // 10, id="plus-10-percent"),
        pytest.param(lambda q: q - 5, id="shifted-down"),
    ],
)
def test_wrong_charges_fail_the_ks_check(synthetic_events: list[SparseEvent], change: Any) -> None:
    stats = PoolStatistics().add_events(_with_charges(synthetic_events, change))
    assert compare_with_reference(stats)["charge_spectrum"]["ks_statistic"] > 0.05


def test_wrong_occupancy_fails_the_layer_check(synthetic_events: list[SparseEvent]) -> None:
    halved = [
        SparseEvent(e.sensor[::2], e.u[::2], e.v[::2], e.charge[::2]) for e in synthetic_events
    ]
    c = compare_with_reference(PoolStatistics().add_events(halved))
    for layer in c["layers"]:
        assert layer["occupancy_ratio"] == pytest.approx(0.5, abs=0.02)
