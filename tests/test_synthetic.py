"""Tests of the synthetic generator and the packaged Geant4 reference figures."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bgcache.errors import InvalidKeyError, UsageError
from bgcache.geometry import N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.models import Generator, get_spec, load_model
from bgcache.models.synthetic import (
    GENERATOR_VERSION,
    SyntheticGenerator,
    load_reference,
    load_synthetic,
)
from bgcache.seeding import EventKey

SHARED_REFERENCE = (
    Path(__file__).resolve().parents[2] / "shared/reference/pxd_background_reference.json"
)
N_STAT_EVENTS = 30


@pytest.fixture(scope="module")
def gen() -> SyntheticGenerator:
    return load_synthetic()


@pytest.fixture(scope="module")
def sample(gen: SyntheticGenerator) -> list[SparseEvent]:
    return gen.events([(20240611, i) for i in range(N_STAT_EVENTS)])


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference()


def _fired_spectrum(ref: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Charges 7..255 and their probabilities for a fired pixel, from the histogram."""
    lows = ref["charge_bin_edges"][:-1]
    fired = lows >= 7
    counts = ref["charge_histogram"][fired]
    return lows[fired], counts / counts.sum()


def _neighbour_fraction(ev: SparseEvent, offsets: list[tuple[int, int]]) -> float:
    """Fraction of hits with at least one fired neighbour (given offsets) on the same sensor."""
    idx = ev.pixel_index.astype(np.int64)
    u, v = ev.u.astype(np.int64), ev.v.astype(np.int64)
    has = np.zeros(idx.size, dtype=bool)
    for du, dv in offsets:
        inside = (u + du >= 0) & (u + du < N_U) & (v + dv >= 0) & (v + dv < N_V)
        nb = idx + du * N_V + dv
        pos = np.clip(np.searchsorted(idx, nb), 0, idx.size - 1)
        has |= inside & (idx[pos] == nb)
    return float(has.mean())


FOUR = [(-1, 0), (1, 0), (0, -1), (0, 1)]
EIGHT = [*FOUR, (-1, -1), (-1, 1), (1, -1), (1, 1)]


# -- reference figures -------------------------------------------------------------------


def test_reference_shapes_and_consistency(ref: dict[str, np.ndarray]) -> None:
    assert ref["occupancy_per_sensor"].shape == (N_SENSORS,)
    assert ref["mean_charge_per_sensor"].shape == (N_SENSORS,)
    assert ref["charge_histogram"].shape == (251,)
    assert ref["charge_bin_edges"].shape == (252,)
    # 10,000 events x 40 sensors x 192,000 pixels were histogrammed.
    assert ref["charge_histogram"].sum() == 10_000 * N_SENSORS * PIXELS_PER_SENSOR
    # The fired fraction of the histogram is the mean per-sensor occupancy.
    fired = ref["charge_histogram"][2:].sum() / ref["charge_histogram"].sum()
    assert fired == pytest.approx(ref["occupancy_per_sensor"].mean(), rel=1e-4)
    assert ref["charge_histogram"][1] == 0  # charges 1..6 were zeroed
    assert "Hosein Hashemi" in ref["license"] and "MIT" in ref["license"]
    assert "github.com/Baran-phys/IEA-GAN" in ref["source"]


def test_reference_is_read_only_and_a_fresh_dict(ref: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="read-only"):
        ref["occupancy_per_sensor"][0] = 1.0
    other = load_reference()
    other["occupancy_per_sensor"] = "changed"
    assert isinstance(load_reference()["occupancy_per_sensor"], np.ndarray)


@pytest.mark.skipif(not SHARED_REFERENCE.exists(), reason="shared reference file not present")
def test_reference_figures_unchanged(ref: dict[str, np.ndarray]) -> None:
    original = json.loads(SHARED_REFERENCE.read_text())
    geant4 = original["samples"]["geant4"]
    for key in ("occupancy_per_sensor", "mean_charge_per_sensor", "charge_histogram"):
        assert ref[key].tolist() == geant4[key], key
    assert ref["charge_bin_edges"].tolist() == original["charge_bin_edges"]
    assert ref["source"] == original["source"]


# -- loading ---------------------------------------------------------------------------


def test_load_model_through_registry() -> None:
    gen = load_model("synthetic")
    assert isinstance(gen, SyntheticGenerator)
    assert isinstance(gen, Generator)
    assert (gen.name, gen.latent_dim, gen.conditional) == ("synthetic", 0, False)
    assert get_spec("synthetic").physics is False
    assert gen.event((1, 0)) == load_synthetic().event((1, 0))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"device": "cuda"}, "device must be 'cpu'", id="device-cuda"),
        pytest.param({"device": "cpu:0"}, "device must be 'cpu'", id="device-cpu0"),
        pytest.param({"precision": "bf16"}, "precision 'fp32'", id="precision-bf16"),
        pytest.param({"precision": "fp16"}, "precision 'fp32'", id="precision-fp16"),
        pytest.param({"nintra": 0}, "nintra", id="nintra-0"),
    ],
)
def test_bad_options_raise_usage_error(options: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        load_model("synthetic", **options)


def test_checkpoint_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="takes no checkpoint"):
        load_model("synthetic", tmp_path / "weights.pt")
    with pytest.raises(UsageError, match="takes no checkpoint"):
        load_synthetic("x.pt")


def test_metadata(gen: SyntheticGenerator) -> None:
    meta = gen.metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["model"] == "synthetic"
    assert meta["architecture"] == GENERATOR_VERSION
    assert meta["physics_model"] is False
    assert "not a physics model" in meta["note"].lower()
    assert "IEA-GAN" in meta["reference"]
    assert meta["numpy"] == np.__version__
    assert "not a physics model" in repr(gen).lower()


def test_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from bgcache.models import load_model\n"
        "ev = load_model('synthetic').events([(1, 0), (1, 1)])\n"
        "assert len(ev) == 2 and ev[0].n_hits > 0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- determinism -------------------------------------------------------------------------

KEYS = [(42, 0), (42, 1), (42, 2), (-7, 3), (2**63 - 1, 2**64 - 1), (-(2**63), 0), (0, 5)]


def test_same_key_same_event(gen: SyntheticGenerator) -> None:
    a = gen.event((42, 0))
    b = load_synthetic().event(EventKey(42, 0))
    assert a == b
    assert a.n_hits > 0


@pytest.mark.parametrize("batch", [1, 2, 3, len(KEYS)], ids=lambda b: f"batch{b}")
def test_event_independent_of_batch_and_order(gen: SyntheticGenerator, batch: int) -> None:
    singles = [gen.event(k) for k in KEYS]
    order = np.random.default_rng(batch).permutation(len(KEYS))
    shuffled = [KEYS[i] for i in order]
    out: list[SparseEvent] = []
    for start in range(0, len(shuffled), batch):
        out.extend(gen.events(shuffled[start : start + batch]))
    for i, ev in zip(order, out, strict=True):
        assert ev == singles[i]


def test_pickled_generator_draws_the_same_events(gen: SyntheticGenerator) -> None:
    clone = pickle.loads(pickle.dumps(gen))
    assert clone.event((9, 9)) == gen.event((9, 9))


def test_no_global_rng(gen: SyntheticGenerator) -> None:
    """Events neither read nor advance numpy's legacy global random state."""
    np.random.seed(1)  # noqa: NPY002
    a = gen.event((5, 5))
    after = np.random.random()  # noqa: NPY002
    np.random.seed(2)  # noqa: NPY002
    b = gen.event((5, 5))
    np.random.seed(1)  # noqa: NPY002
    gen.event((6, 6))
    assert a == b
    assert np.random.random() == after  # noqa: NPY002


def test_different_keys_differ(gen: SyntheticGenerator) -> None:
    events = [gen.event(k) for k in KEYS]
    for i in range(len(events)):
        for j in range(i + 1, len(events)):
            assert events[i] != events[j], (KEYS[i], KEYS[j])
    # seeds that differ only in the top bit
    assert gen.event((1, 0)) != gen.event((1 - 2**63, 0))


@pytest.mark.parametrize(
    "key", [(1, -1), (2**63, 0), ("a", 0), (1,)], ids=["neg-index", "big-seed", "str", "short"]
)
def test_bad_keys(gen: SyntheticGenerator, key: Any) -> None:
    with pytest.raises(UsageError):
        gen.events([key])
    with pytest.raises(UsageError):
        gen.event(key)
    if len(key) == 1:
        with pytest.raises(InvalidKeyError, match="not a \\(seed, index\\) pair"):
            gen.event(key)


# -- event content -----------------------------------------------------------------------


def test_events_are_valid(sample: list[SparseEvent]) -> None:
    for ev in sample[:5]:
        dtypes = [c.dtype.name for c in (ev.sensor, ev.u, ev.v, ev.charge)]
        assert dtypes == ["uint8", "uint16", "uint16", "uint8"]
        checked = SparseEvent(ev.sensor, ev.u, ev.v, ev.charge)  # validating constructor
        assert checked == ev
        assert int(ev.u.max()) < N_U and int(ev.v.max()) < N_V and int(ev.sensor.max()) < N_SENSORS
        idx = ev.pixel_index
        assert bool(np.all(idx[1:] > idx[:-1]))
        assert SparseEvent.from_dense(ev.to_dense()) == ev
        # hits reach the sensor edges
        assert {0, N_U - 1} <= set(ev.u.tolist()) and {0, N_V - 1} <= set(ev.v.tolist())


def test_occupancy_follows_reference(sample: list[SparseEvent], ref: dict[str, np.ndarray]) -> None:
    occ = np.array([ev.occupancy() for ev in sample]).mean(axis=0)
    expected = ref["occupancy_per_sensor"]
    for layer in (slice(0, 16), slice(16, 40)):
        assert occ[layer].mean() == pytest.approx(expected[layer].mean(), rel=0.03)
    np.testing.assert_allclose(occ, expected, rtol=0.12)
    hits = np.array([ev.n_hits for ev in sample])
    assert hits.mean() == pytest.approx(expected.sum() * PIXELS_PER_SENSOR, rel=0.02)


def test_hit_count_fluctuates_like_reference(
    sample: list[SparseEvent], ref: dict[str, np.ndarray]
) -> None:
    """Event-to-event spread of a sensor's occupancy, from the reference occupancy histogram.

    The reference histogram mixes all images of a layer; removing the spread of the
    per-sensor means leaves the event-to-event spread (twice the Poisson spread of
    independent 3-pixel clusters).
    """
    occ = np.array([ev.occupancy() for ev in sample])
    centres = (ref["occupancy_bin_edges"][1:] + ref["occupancy_bin_edges"][:-1]) / 2
    counts = ref["occupancy_histogram"]
    means = ref["occupancy_per_sensor"]
    # layer 2 images all lie below 0.0095, layer 1 images above it
    for layer, sel in ((slice(0, 16), centres > 0.0095), (slice(16, 40), centres < 0.0095)):
        c, w = centres[sel], counts[sel]
        mixed = ((c - (c * w).sum() / w.sum()) ** 2 * w).sum() / w.sum()
        expected = np.sqrt(mixed - means[layer].var())
        got = np.sqrt(occ[:, layer].var(axis=0, ddof=1).mean())
        assert got == pytest.approx(expected, rel=0.2)


def test_charge_follows_reference(sample: list[SparseEvent], ref: dict[str, np.ndarray]) -> None:
    charge = np.concatenate([ev.charge for ev in sample]).astype(np.float64)
    sensor = np.concatenate([ev.sensor for ev in sample])
    assert charge.min() >= 7 and charge.max() <= 255
    q, p = _fired_spectrum(ref)
    assert 21.0 < float((q * p).sum()) < 22.0
    assert charge.mean() == pytest.approx(float((q * p).sum()), rel=0.02)
    # the spectrum shape: cumulative distribution at a few charges
    for cut in (8, 12, 20, 30, 50, 100):
        assert (charge <= cut).mean() == pytest.approx(p[q <= cut].sum(), abs=0.005), cut
    # per-sensor mean charge (layer 2 runs higher than layer 1 in the reference)
    means = np.array([charge[sensor == s].mean() for s in range(N_SENSORS)])
    np.testing.assert_allclose(means, ref["mean_charge_per_sensor"], rtol=0.04)
    assert means[16:].mean() - means[:16].mean() > 1.0


def test_hits_are_clustered(sample: list[SparseEvent]) -> None:
    for ev in sample[:3]:
        assert _neighbour_fraction(ev, EIGHT) >= 0.7
        assert _neighbour_fraction(ev, FOUR) >= 0.6


def test_neighbour_fraction_detects_isolated_hits() -> None:
    """The clustering measure is not a tautology: scattered hits score low."""
    rng = np.random.default_rng(0)
    idx = np.unique(rng.integers(0, N_SENSORS * PIXELS_PER_SENSOR, 60_000))
    ev = SparseEvent.from_pixel_index(idx, np.full(idx.size, 9, np.uint8))
    assert _neighbour_fraction(ev, EIGHT) < 0.1
