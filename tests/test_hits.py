"""Tests for bgcache.hits: sparse events, dense round trips, validation and signal merging."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bgcache.errors import EventError
from bgcache.geometry import IMAGE_SHAPE, SENSORS, pack_vxd_id
from bgcache.hits import SparseEvent, merge, sorted_event

N_PIXELS = 40 * 250 * 768


def _random_dense(
    seed: int, n_hits: int, dtype: type = np.uint8, *, borders: bool = False
) -> np.ndarray:
    """A dense event with ``n_hits`` random fired pixels (charges 1..max of dtype)."""
    rng = np.random.default_rng(seed)
    flat = np.zeros(N_PIXELS, dtype=dtype)
    where = rng.choice(N_PIXELS, size=n_hits, replace=False)
    flat[where] = rng.integers(1, np.iinfo(dtype).max, size=n_hits, endpoint=True)
    dense = flat.reshape(IMAGE_SHAPE)
    if borders:
        for s, u, v in [
            (0, 0, 0),
            (0, 249, 767),
            (39, 0, 0),
            (39, 249, 767),
            (17, 249, 0),
            (5, 0, 767),
        ]:
            dense[s, u, v] = 1 + (s + u + v) % 255
    return dense


def _random_event(
    seed: int, n_hits: int, *, pool: int = N_PIXELS, dtype: type = np.uint8
) -> SparseEvent:
    """A random event whose pixels are drawn from the first ``pool`` pixels (forces overlaps)."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(pool, size=n_hits, replace=False))
    charge = rng.integers(1, np.iinfo(dtype).max, size=n_hits, endpoint=True).astype(dtype)
    return SparseEvent.from_pixel_index(index, charge)


def _ev(hits: list[tuple[int, int, int, int]], dtype: type = np.uint8) -> SparseEvent:
    """A SparseEvent from (sensor, u, v, charge) tuples, given in sorted order."""
    cols = list(zip(*hits, strict=True)) if hits else [[], [], [], []]
    return SparseEvent(
        np.array(cols[0], np.uint8),
        np.array(cols[1], np.uint16),
        np.array(cols[2], np.uint16),
        np.array(cols[3], dtype),
    )


def _hits(ev: SparseEvent) -> list[tuple[int, int, int, int]]:
    return list(
        zip(ev.sensor.tolist(), ev.u.tolist(), ev.v.tolist(), ev.charge.tolist(), strict=True)
    )


# -- dense <-> sparse ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_hits", "dtype", "borders"),
    [
        (0, np.uint8, False),
        (1, np.uint8, False),
        (0, np.uint8, True),
        (500, np.uint8, True),
        (69_000, np.uint8, True),
        (2_000, np.uint16, True),
        (2_000, np.uint32, False),
    ],
    ids=["empty", "one-hit", "borders-only", "500-hits", "realistic-69k", "uint16", "uint32"],
)
def test_dense_round_trip(n_hits: int, dtype: type, borders: bool) -> None:
    dense = _random_dense(n_hits, n_hits, dtype, borders=borders)
    ev = SparseEvent.from_dense(dense)
    assert ev.n_hits == len(ev) == np.count_nonzero(dense)
    assert ev.sensor.dtype == np.uint8
    assert ev.u.dtype == np.uint16
    assert ev.v.dtype == np.uint16
    assert ev.charge.dtype == dtype
    back = ev.to_dense()
    assert back.shape == IMAGE_SHAPE
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, dense)
    # the columns are exactly the nonzero pixels
    s, u, v = np.nonzero(dense)
    np.testing.assert_array_equal(ev.sensor, s)
    np.testing.assert_array_equal(ev.u, u)
    np.testing.assert_array_equal(ev.v, v)
    np.testing.assert_array_equal(ev.charge, dense[s, u, v])
    # and they pass full validation
    assert SparseEvent(ev.sensor, ev.u, ev.v, ev.charge) == ev


def test_border_pixels_survive() -> None:
    dense = _random_dense(0, 0, borders=True)
    ev = SparseEvent.from_dense(dense)
    assert _hits(ev)[-1] == (39, 249, 767, 1 + (39 + 249 + 767) % 255)
    assert _hits(ev)[0] == (0, 0, 0, 1)
    assert int(ev.pixel_index.max()) == N_PIXELS - 1


def test_empty_event() -> None:
    empty = SparseEvent.empty()
    assert empty.n_hits == 0
    assert empty == SparseEvent.from_dense(np.zeros(IMAGE_SHAPE, np.uint8))
    assert empty == SparseEvent([], [], [], [])
    assert not empty.to_dense().any()
    assert empty.occupancy().tolist() == [0.0] * 40
    assert empty.to_digits()["vxd_id"].shape == (0,)
    assert "n_hits=0" in repr(empty)


def test_hits_are_sorted_by_sensor_u_v() -> None:
    ev = SparseEvent.from_dense(_random_dense(3, 5_000, borders=True))
    order = np.lexsort((ev.v, ev.u, ev.sensor))
    np.testing.assert_array_equal(order, np.arange(ev.n_hits))
    assert np.all(np.diff(ev.pixel_index.astype(np.int64)) > 0)


def test_pixel_index_formula() -> None:
    ev = SparseEvent.from_dense(_random_dense(4, 3_000, borders=True))
    expected = ev.sensor.astype(np.int64) * 192_000 + ev.u.astype(np.int64) * 768 + ev.v
    assert ev.pixel_index.dtype == np.uint32
    np.testing.assert_array_equal(ev.pixel_index, expected)
    assert SparseEvent([39], [249], [767], [1]).pixel_index.tolist() == [
        39 * 192_000 + 249 * 768 + 767
    ]
    round_trip = SparseEvent.from_pixel_index(ev.pixel_index, ev.charge)
    assert round_trip == ev


def test_to_digits() -> None:
    ev = _ev([(0, 1, 2, 3), (15, 0, 767, 4), (16, 249, 0, 5), (39, 100, 200, 255)])
    digits = ev.to_digits()
    assert set(digits) == {"vxd_id", "u_cell", "v_cell", "charge"}
    assert digits["vxd_id"].dtype == np.uint16
    assert digits["vxd_id"].tolist() == [8480, pack_vxd_id(1, 8, 2), pack_vxd_id(2, 1, 1), 19520]
    assert digits["u_cell"].tolist() == [1, 0, 249, 100]
    assert digits["v_cell"].tolist() == [2, 767, 0, 200]
    assert digits["charge"].tolist() == [3, 4, 5, 255]


def test_to_digits_all_sensors() -> None:
    ev = SparseEvent(np.arange(40), np.zeros(40, int), np.zeros(40, int), np.ones(40, int))
    expected = [pack_vxd_id(s.layer, s.ladder, s.sensor) for s in SENSORS]
    assert ev.to_digits()["vxd_id"].tolist() == expected


def test_occupancy() -> None:
    ev = _ev([(0, 0, 0, 1), (0, 0, 1, 1), (39, 5, 5, 9)])
    occ = ev.occupancy()
    assert occ.shape == (40,)
    assert occ[0] == 2 / 192_000
    assert occ[39] == 1 / 192_000
    assert occ[1:39].sum() == 0


def test_equality_is_by_value_and_unhashable() -> None:
    a = _ev([(1, 2, 3, 4)])
    assert a == _ev([(1, 2, 3, 4)])
    assert a != _ev([(1, 2, 3, 5)])
    assert a != _ev([(1, 2, 4, 4)])
    assert a != "not an event"
    with pytest.raises(TypeError):
        hash(a)


def test_constructor_widens_large_charges() -> None:
    ev = SparseEvent([0, 0], [0, 0], [0, 1], [300, 7])
    assert ev.charge.dtype == np.uint16
    assert ev.charge.tolist() == [300, 7]
    assert SparseEvent([0], [0], [0], [70_000]).charge.dtype == np.uint32
    assert SparseEvent([0], [0], [0], np.array([7], np.int64)).charge.dtype == np.uint8


# -- validation -------------------------------------------------------------------------


def _cols(**overrides: Any) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "sensor": [0, 0, 1],
        "u": [0, 0, 0],
        "v": [0, 1, 0],
        "charge": [5, 6, 7],
    }
    cols.update(overrides)
    return cols


@pytest.mark.parametrize(
    ("cols", "match"),
    [
        (_cols(v=[1, 0, 0]), "unique and sorted"),
        (_cols(sensor=[1, 0, 0]), "unique and sorted"),
        (_cols(v=[0, 0, 0], sensor=[0, 0, 1]), "unique and sorted"),
        (_cols(sensor=[0, 0, 40]), "'sensor' out of range"),
        (_cols(u=[0, 0, 250]), "'u' out of range"),
        (_cols(v=[0, 1, 768]), "'v' out of range"),
        (_cols(u=[-1, 0, 0]), "'u' out of range"),
        (_cols(charge=[5, 0, 7]), "charges must be > 0"),
        (_cols(charge=[5, -1, 7]), "charges must be > 0"),
        (_cols(charge=[5, 6]), "differ in length"),
        (_cols(u=[0, 0, 0, 0]), "differ in length"),
        (_cols(v=[[0, 1, 0]]), "'v' must be 1-d"),
        (_cols(charge=np.ones((3, 1), int)), "'charge' must be 1-d"),
        (_cols(sensor=np.uint8(0)), "'sensor' must be 1-d"),
        (_cols(charge=[5.0, 6.0, 7.0]), "must hold integers"),
        (_cols(u=[False, False, False]), "must hold integers"),
    ],
    ids=[
        "unsorted-v",
        "unsorted-sensor",
        "duplicate",
        "sensor-40",
        "u-250",
        "v-768",
        "u-negative",
        "zero-charge",
        "negative-charge",
        "short-charge",
        "long-u",
        "2d-v",
        "2d-charge",
        "0d-sensor",
        "float-charge",
        "bool-u",
    ],
)
def test_invalid_events_raise(cols: dict[str, Any], match: str) -> None:
    with pytest.raises(EventError, match=match) as info:
        SparseEvent(**cols)
    assert isinstance(info.value, ValueError)


def test_valid_reference_columns() -> None:
    """The base columns used by the invalid cases are themselves valid."""
    assert SparseEvent(**_cols()).n_hits == 3


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((40, 256, 768), np.uint8), "shape"),
        (np.zeros((250, 768), np.uint8), "shape"),
        (np.zeros(IMAGE_SHAPE, np.float32), "uint8/16/32"),
        (np.zeros(IMAGE_SHAPE, np.int16), "uint8/16/32"),
    ],
    ids=["raw-256-rows", "one-sensor", "float", "signed"],
)
def test_from_dense_rejects(images: np.ndarray, match: str) -> None:
    with pytest.raises(EventError, match=match):
        SparseEvent.from_dense(images)


@pytest.mark.parametrize(
    "index",
    [[-1], [N_PIXELS], [[0, 1]]],
    ids=["negative", "past-end", "2d"],
)
def test_from_pixel_index_rejects(index: Any) -> None:
    with pytest.raises(EventError, match="pixel indices"):
        SparseEvent.from_pixel_index(index, np.ones(np.size(index), np.uint8))


def test_from_pixel_index_rejects_unsorted() -> None:
    with pytest.raises(EventError, match="unique and sorted"):
        SparseEvent.from_pixel_index([5, 3], [1, 1])


# -- sorted_event -------------------------------------------------------------------------


def test_sorted_event_sorts_and_sums_duplicates() -> None:
    ev = sorted_event(
        [39, 1, 0, 1, 39, 1],
        [249, 0, 3, 0, 249, 0],
        [767, 2, 1, 2, 767, 1],
        [200, 5, 7, 6, 100, 1],
    )
    assert _hits(ev) == [(0, 3, 1, 7), (1, 0, 1, 1), (1, 0, 2, 11), (39, 249, 767, 300)]
    assert ev.charge.dtype == np.uint16  # 200 + 100 does not fit in uint8


def test_sorted_event_matches_from_dense() -> None:
    dense = _random_dense(6, 4_000, borders=True)
    expected = SparseEvent.from_dense(dense)
    perm = np.random.default_rng(0).permutation(expected.n_hits)
    ev = sorted_event(
        expected.sensor[perm], expected.u[perm], expected.v[perm], expected.charge[perm]
    )
    assert ev == expected
    assert ev.charge.dtype == np.uint8


def test_sorted_event_empty() -> None:
    assert sorted_event([], [], [], []) == SparseEvent.empty()


@pytest.mark.parametrize(
    ("cols", "match"),
    [
        (([0], [250], [0], [1]), "'u' out of range"),
        (([0], [0], [768], [1]), "'v' out of range"),
        (([1], [-1], [0], [1]), "'u' out of range"),
        (([40], [0], [0], [1]), "'sensor' out of range"),
        (([0], [0], [0], [0]), "charges must be > 0"),
        (([0, 0], [0, 0], [0, 0], [5, -5]), "charges must be > 0"),
        (([0, 0], [0], [0], [1]), "differ in length"),
        (([0], [0], [0], [1.5]), "must hold integers"),
    ],
    ids=[
        "u-250",
        "v-768",
        "u-negative",
        "sensor-40",
        "zero-charge",
        "cancelling-charges",
        "length",
        "float-charge",
    ],
)
def test_sorted_event_rejects(cols: tuple[list[Any], ...], match: str) -> None:
    """Out-of-range pixels must not wrap onto a neighbouring sensor or row."""
    with pytest.raises(EventError, match=match):
        sorted_event(*cols)


# -- merge (DESIGN 5) ---------------------------------------------------------------------


def test_merge_disjoint_pixels_appended_and_sorted() -> None:
    sig = _ev([(0, 10, 10, 30), (20, 5, 5, 40)])
    bkg = _ev([(0, 0, 0, 1), (0, 10, 11, 2), (39, 249, 767, 3)])
    m = merge(sig, bkg)
    assert _hits(m) == [
        (0, 0, 0, 1),
        (0, 10, 10, 30),
        (0, 10, 11, 2),
        (20, 5, 5, 40),
        (39, 249, 767, 3),
    ]
    assert SparseEvent(m.sensor, m.u, m.v, m.charge) == m  # valid, sorted, unique


def test_merge_same_pixel_adds_without_cap() -> None:
    sig = _ev([(3, 4, 5, 250), (3, 4, 6, 255)])
    bkg = _ev([(3, 4, 5, 10), (3, 4, 6, 255), (3, 4, 7, 9)])
    m = merge(sig, bkg)
    assert _hits(m) == [(3, 4, 5, 260), (3, 4, 6, 510), (3, 4, 7, 9)]
    assert np.iinfo(m.charge.dtype).max >= 510
    assert m.charge.dtype.kind == "u"


def test_merge_signal_only() -> None:
    sig = _ev([(1, 2, 3, 4), (5, 6, 7, 200)])
    m = merge(sig, SparseEvent.empty())
    assert _hits(m) == _hits(sig)


def test_merge_background_only() -> None:
    bkg = SparseEvent.from_dense(_random_dense(8, 1_000, borders=True))
    m = merge(SparseEvent.empty(), bkg)
    assert _hits(m) == _hits(bkg)
    np.testing.assert_array_equal(m.to_dense(), bkg.to_dense())


def test_merge_both_empty() -> None:
    m = merge(SparseEvent.empty(), SparseEvent.empty())
    assert m.n_hits == 0
    assert m.sensor.dtype == np.uint8
    assert m.u.dtype == np.uint16
    assert m.v.dtype == np.uint16


def test_merge_uint16_signal_charges() -> None:
    sig = _ev([(0, 0, 0, 1_000), (0, 0, 1, 65_535), (0, 0, 2, 300)], dtype=np.uint16)
    bkg = _ev([(0, 0, 0, 24), (0, 0, 1, 255), (0, 0, 3, 1)])
    m = merge(sig, bkg)
    assert _hits(m) == [(0, 0, 0, 1_024), (0, 0, 1, 65_790), (0, 0, 2, 300), (0, 0, 3, 1)]
    assert m.charge.dtype == np.uint32  # 65_790 does not fit in uint16


def test_merge_does_not_modify_inputs() -> None:
    sig = _random_event(1, 300, pool=5_000)
    bkg = _random_event(2, 300, pool=5_000)
    sig_before, bkg_before = _hits(sig), _hits(bkg)
    merge(sig, bkg)
    assert _hits(sig) == sig_before
    assert _hits(bkg) == bkg_before


def test_merge_is_commutative() -> None:
    sig = _random_event(11, 400, pool=2_000, dtype=np.uint16)
    bkg = _random_event(12, 400, pool=2_000)
    ab, ba = merge(sig, bkg), merge(bkg, sig)
    np.testing.assert_array_equal(ab.pixel_index, ba.pixel_index)
    np.testing.assert_array_equal(ab.charge, ba.charge)
    expected_pixels = np.union1d(sig.pixel_index, bkg.pixel_index)
    np.testing.assert_array_equal(ab.pixel_index, expected_pixels)


@pytest.mark.parametrize(
    ("seed", "n_sig", "n_bkg", "pool", "sig_dtype"),
    [
        (0, 50, 69_000, N_PIXELS, np.uint8),
        (1, 2_000, 3_000, 6_000, np.uint8),  # heavy overlap
        (2, 500, 500, 1_000, np.uint16),
        (3, 1, 10_000, 20_000, np.uint16),
        (4, 1_000, 1, N_PIXELS, np.uint8),
    ],
    ids=["realistic", "heavy-overlap", "uint16-signal", "one-signal", "one-background"],
)
def test_merge_equals_dense_sum(
    seed: int, n_sig: int, n_bkg: int, pool: int, sig_dtype: type
) -> None:
    sig = _random_event(seed, n_sig, pool=pool, dtype=sig_dtype)
    bkg = _random_event(seed + 1000, n_bkg, pool=pool)
    m = merge(sig, bkg)
    expected = sig.to_dense().astype(np.uint32) + bkg.to_dense()
    np.testing.assert_array_equal(m.to_dense(), expected)
    overlap = np.intersect1d(sig.pixel_index, bkg.pixel_index).size
    assert m.n_hits == n_sig + n_bkg - overlap
    if pool < N_PIXELS:
        assert overlap > 0
    assert SparseEvent(m.sensor, m.u, m.v, m.charge) == m
