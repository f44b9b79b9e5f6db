"""The ``synthetic`` generator: fast numpy events with Geant4 reference statistics.

This is NOT a physics model. It draws clustered hits whose per-sensor occupancy, charge
spectrum and hit-count fluctuation follow the Geant4 reference figures shipped in
``bgcache/data/pxd_reference.json`` (from IEA-GAN's evaluation results, MIT License,
(c) 2022 Hosein Hashemi), so that pools of 10^4-10^6 events can be built in minutes for
I/O work, benchmarks and demos. It never imports torch.

The reference figures are :mod:`bgcache.reference`'s (:func:`load_reference` is
re-exported here); this module owns the generator (:func:`load_synthetic`,
:class:`SyntheticGenerator`). How one event is drawn,
all from :func:`bgcache.seeding.event_rng` with purpose ``SYNTHETIC``:

1. per sensor, a cluster count ~ Poisson(mu_s * G_s), where G_s ~ Gamma(mean 1) adds the
   extra-Poisson spread of the reference per-image occupancy;
2. per cluster, a shape from a small table of PXD-like templates (1-10 pixels: pairs,
   L and T shapes, squares, short streaks along v) and a uniform anchor such that the
   whole cluster lies on the sensor;
3. pixels are sorted and overlapping pixels merged (one hit per pixel); ``mu_s`` is chosen
   so that the expected fraction of fired pixels equals the reference occupancy after
   that merge;
4. each fired pixel draws an independent charge in 7..255 ADU (the reference zeroes
   pixels below 7 ADU) from the reference spectrum, linearly tilted per sensor so that
   the per-sensor mean charge matches the reference while the spectrum summed over
   sensors stays the reference histogram.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bgcache.errors import UsageError
from bgcache.geometry import N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.models import validate_threads
from bgcache.reference import load_reference
from bgcache.seeding import EventKey, Purpose, as_keys, event_rng

#: Version of the event recipe; bump whenever the events drawn for a key change.
GENERATOR_VERSION = "synthetic-1"
#: Lowest charge of a fired pixel in the reference sample (pixels below are zeroed).
CHARGE_MIN = 7
#: Highest charge (8-bit ADU).
CHARGE_MAX = 255
#: Variance / mean of the hit count of one sensor image. Derived from the reference
#: per-image occupancy histogram after removing the sensor-to-sensor spread of the means:
#: 12.1 (layer 1) and 12.6 (layer 2).
HIT_COUNT_DISPERSION = 12.0
_U32_SHIFT = np.uint64(32)
_U32_MASK = np.uint64(0xFFFF_FFFF)
#: Said in every pool built with this generator.
NOTE = (
    "synthetic events are NOT a physics model: clustered random hits that only follow the "
    "Geant4 reference per-sensor occupancy and charge statistics"
)

# Cluster templates: (relative weight, rows along u, '#' = fired pixel, columns along v).
_TEMPLATES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (12, ("#",)),
    (16, ("##",)),
    (8, ("#", "#")),
    (4, ("#.", ".#")),
    (4, (".#", "#.")),
    (7, ("###",)),
    (3, ("#", "#", "#")),
    (3, ("##", "#.")),
    (3, ("##", ".#")),
    (3, ("#.", "##")),
    (3, (".#", "##")),
    (8, ("##", "##")),
    (4, ("####",)),
    (2, ("###", ".#.")),
    (2, (".#.", "###")),
    (2, (".##", "##.")),
    (2, ("##.", ".##")),
    (2, ("###", "##.")),
    (2, ("###", ".##")),
    (1, (".#.", "###", ".#.")),
    (3, ("###", "###")),
    (1, ("##", "##", "##")),
    (1, ("######",)),
    (1, ("....####", "####....")),
    (1, (".....#####", "#####.....")),
    (1, ("###", "###", "###")),
)


def _fired_charge_spectrum(ref: dict[str, Any]) -> np.ndarray:
    """Probabilities of charges 7..255 (249 values) for a fired pixel."""
    edges = ref["charge_bin_edges"]
    counts = ref["charge_histogram"]
    lows = edges[:-1]
    fired = (lows >= CHARGE_MIN) & (lows <= CHARGE_MAX)
    assert np.array_equal(lows[fired], np.arange(CHARGE_MIN, CHARGE_MAX + 1))
    spectrum: np.ndarray = counts[fired] / counts[fired].sum()
    return spectrum


def _alias_table(prob: np.ndarray) -> np.ndarray:
    """Walker/Vose alias table of 256 columns packed as ``threshold << 8 | alias`` (uint32).

    Column ``c = r & 0xFF`` of a 32-bit draw ``r`` is kept if ``r >> 8`` is below its 24-bit
    threshold, otherwise it is replaced by its alias. Columns with probability 0 have
    threshold 0; full columns are their own alias.
    """
    n = prob.size
    assert n == 256
    scaled = prob * n / prob.sum()
    thresh = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.uint32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        thresh[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # Leftovers are 1 up to rounding error and keep themselves as alias.
    top = (1 << 24) - 1
    threshold = np.minimum(np.rint(np.clip(thresh, 0.0, 1.0) * (1 << 24)), top).astype(np.uint32)
    packed: np.ndarray = (threshold << np.uint32(8)) | alias
    return packed


@cache
def _charge_tables() -> np.ndarray:
    """Per-sensor alias tables (flattened 40*256) for the tilted charge spectra.

    Sensor s draws ``7 + bin`` with probability ``p(q) * (1 + a_s * (q - mean))`` where
    ``a_s * var = m_s - m_w``, ``m_s`` is the reference mean charge of the sensor and
    ``m_w`` its hit-weighted average, so that the hit-weighted mixture over sensors is the
    reference spectrum itself and each sensor's mean charge is its reference mean (up to
    the 0.005 ADU by which the reference's own figures disagree).
    """
    ref = load_reference()
    p = _fired_charge_spectrum(ref)
    q = np.arange(CHARGE_MIN, CHARGE_MAX + 1, dtype=np.float64)
    mean = float((p * q).sum())
    var = float((p * (q - mean) ** 2).sum())
    occ = ref["occupancy_per_sensor"]
    means = ref["mean_charge_per_sensor"]
    m_w = float((occ * means).sum() / occ.sum())
    lo, hi = -1.0 / (CHARGE_MAX - mean), 1.0 / (mean - CHARGE_MIN)
    tables = np.empty((N_SENSORS, 256), dtype=np.uint32)
    for s in range(N_SENSORS):
        a = min(max((float(means[s]) - m_w) / var, lo), hi)
        prob = np.zeros(256, dtype=np.float64)
        prob[: q.size] = p * (1.0 + a * (q - mean))
        tables[s] = _alias_table(prob)
        # Columns past 255 - 7 have probability 0: never kept, and never an alias.
        assert not (tables[s, q.size :] >> 8).any() and int((tables[s] & 0xFF).max()) < q.size
    flat = tables.ravel()
    flat.setflags(write=False)
    return flat


def _template_tables() -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """Template probabilities, flat pixel offsets, and anchor ranges along u and v."""
    weights = np.array([w for w, _ in _TEMPLATES], dtype=np.float64)
    offsets = []
    span_u = np.empty(len(_TEMPLATES), dtype=np.uint64)
    span_v = np.empty(len(_TEMPLATES), dtype=np.uint64)
    for t, (_, rows) in enumerate(_TEMPLATES):
        assert len({len(row) for row in rows}) == 1, "template rows must have equal length"
        flat = [
            du * N_V + dv for du, row in enumerate(rows) for dv, c in enumerate(row) if c == "#"
        ]
        offsets.append(np.array(flat, dtype=np.uint32))
        span_u[t] = N_U - len(rows) + 1
        span_v[t] = N_V - len(rows[0]) + 1
    return weights / weights.sum(), offsets, span_u, span_v


class SyntheticGenerator:
    """Clustered random PXD events with reference statistics (NOT a physics model).

    Build it with :func:`load_synthetic` or ``bgcache.models.load_model("synthetic")``.

    Attributes:
        name: registry name (``"synthetic"``).
        latent_dim: 0, there are no latents.
        conditional: False.

    Example:
        >>> gen = load_synthetic()
        >>> ev = gen.event((7, 0))
        >>> 50_000 < ev.n_hits < 90_000, int(ev.charge.min()) >= 7
        (True, True)
        >>> gen.events([(7, 0)])[0] == ev
        True
    """

    latent_dim: int = 0
    conditional: bool = False

    def __init__(self, name: str = "synthetic") -> None:
        self.name = name
        ref = load_reference()
        self._source: str = ref["source"]
        prob, offsets, span_u, span_v = _template_tables()
        self._template_prob = prob
        self._offsets = offsets
        self._span_u = span_u
        self._span_v = span_v
        self._sizes = np.array([o.size for o in offsets], dtype=np.int64)
        mean_size = float(prob @ self._sizes)
        # E[S^2]/E[S]: variance/mean of the hit count of a Poisson number of clusters.
        size_dispersion = float(prob @ self._sizes**2) / mean_size
        occ = ref["occupancy_per_sensor"]
        # A pixel is covered by ~Poisson(lam) clusters and fires with 1 - exp(-lam).
        lam = -np.log1p(-occ)
        self._mu = lam * PIXELS_PER_SENSOR / mean_size
        hits = occ * PIXELS_PER_SENSOR
        extra = max(HIT_COUNT_DISPERSION - size_dispersion, 1e-3) / hits
        self._gamma_shape = 1.0 / extra
        self._sensor_ids = np.arange(N_SENSORS, dtype=np.uint8)
        self._sensor_base = np.arange(N_SENSORS, dtype=np.uint32) * np.uint32(PIXELS_PER_SENSOR)
        self._sensor_edges = np.arange(N_SENSORS + 1, dtype=np.uint32) * np.uint32(
            PIXELS_PER_SENSOR
        )
        self._cluster_base = np.tile(self._sensor_base.astype(np.uint64), len(offsets))
        self._alias = _charge_tables()
        self._table_base = np.arange(N_SENSORS, dtype=np.intp) << 8
        #: Mean number of pixels of a cluster template.
        self.mean_cluster_size = mean_size

    def event(self, key: EventKey | tuple[int, int]) -> SparseEvent:
        """The event of one key (seed, index).

        Example:
            >>> load_synthetic().event((1, 2)).sensor.dtype.name
            'uint8'
        """
        (k,) = as_keys([key])
        return self._draw(k.seed, k.index)

    def events(self, keys: Iterable[EventKey | tuple[int, int]]) -> list[SparseEvent]:
        """One event per key; event (seed, i) is the same in any batch or order.

        Example:
            >>> gen = load_synthetic()
            >>> a, b = gen.events([(3, 0), (3, 1)])
            >>> a == gen.event((3, 0)), a == b
            (True, False)
        """
        return [self._draw(k.seed, k.index) for k in as_keys(keys)]

    def _draw(self, seed: int, index: int) -> SparseEvent:
        rng = event_rng(seed, index, Purpose.SYNTHETIC)
        bits = rng.bit_generator
        # 1. cluster counts per (sensor, template): Poisson splitting of a per-sensor
        #    Poisson count whose intensity is Gamma distributed (extra-Poisson spread).
        intensity = rng.standard_gamma(self._gamma_shape) / self._gamma_shape
        counts = rng.poisson(np.outer(self._template_prob, self._mu * intensity))
        per_template = counts.sum(axis=1)
        # 2. anchors, template-major then sensor order; the cluster lies on the sensor.
        #    u0 = floor(span * x / 2**32) from the two 32-bit halves of one raw draw.
        raw = bits.random_raw(int(per_template.sum()))
        u0 = ((raw >> _U32_SHIFT) * np.repeat(self._span_u, per_template)) >> _U32_SHIFT
        v0 = ((raw & _U32_MASK) * np.repeat(self._span_v, per_template)) >> _U32_SHIFT
        base = (np.repeat(self._cluster_base, counts.ravel()) + u0 * np.uint64(N_V) + v0).astype(
            np.uint32
        )
        pix = np.empty(int(per_template @ self._sizes), dtype=np.uint32)
        c = o = 0
        for offsets, n_t in zip(self._offsets, per_template.tolist(), strict=True):
            k = offsets.size
            np.add(base[c : c + n_t, None], offsets, out=pix[o : o + n_t * k].reshape(n_t, k))
            c += n_t
            o += n_t * k
        # 3. sort and merge overlapping pixels; split the index into sensor, u, v.
        pix.sort()
        if pix.size > 1:
            keep = np.empty(pix.size, dtype=bool)
            keep[0] = True
            np.not_equal(pix[1:], pix[:-1], out=keep[1:])
            pix = pix[keep]
        per_sensor = np.diff(np.searchsorted(pix, self._sensor_edges))
        sensor = np.repeat(self._sensor_ids, per_sensor)
        rest = pix - np.repeat(self._sensor_base, per_sensor)
        u = (rest >> np.uint32(8)) * np.uint32(683) >> np.uint32(11)  # (rest // 256) // 3
        v = rest - u * np.uint32(N_V)
        # 4. charges: per-sensor alias tables, 32 random bits per hit.
        raw = bits.random_raw((pix.size + 1) // 2)
        r = raw.astype("<u8", copy=False).view("<u4")[: pix.size]  # same on any byte order
        column = np.repeat(self._table_base, per_sensor)  # intp: the fastest gather index
        column |= r & np.uint32(0xFF)
        entry = self._alias[column]
        keep_column = (r >> np.uint32(8)) < (entry >> np.uint32(8))
        # charge = 7 + (column if kept else alias), as a branch-free byte select
        mask = keep_column.view(np.uint8) * np.uint8(0xFF)
        alias = entry.astype(np.uint8)
        charge = alias ^ ((alias ^ r.astype(np.uint8)) & mask)
        charge += np.uint8(CHARGE_MIN)
        return SparseEvent(sensor, u.astype(np.uint16), v.astype(np.uint16), charge, validate=False)

    def metadata(self) -> dict[str, Any]:
        """What a pool records about this generator (JSON-serialisable).

        Example:
            >>> meta = load_synthetic().metadata()
            >>> meta["model"], meta["architecture"], meta["physics_model"]
            ('synthetic', 'synthetic-1', False)
        """
        return {
            "model": self.name,
            "architecture": GENERATOR_VERSION,
            "latent_dim": 0,
            "checkpoint_sha256": None,
            "checkpoint_path": None,
            "precision": "fp32",
            "device_type": "cpu",
            "hit_threshold": CHARGE_MIN,
            "physics_model": False,
            "note": NOTE,
            "reference": self._source,
            "numpy": np.__version__,
        }

    def __repr__(self) -> str:
        return f"SyntheticGenerator({self.name!r}, {GENERATOR_VERSION}, NOT a physics model)"


def load_synthetic(
    checkpoint: str | Path | None = None,
    *,
    name: str = "synthetic",
    device: str = "cpu",
    optimize: bool = True,
    nintra: int = 1,
    ninter: int = 1,
    precision: str = "fp32",
) -> SyntheticGenerator:
    """Build the synthetic generator (the registry's loader for ``"synthetic"``).

    Args:
        checkpoint: must be None: the synthetic generator has no weights.
        name: registry name recorded in the metadata.
        device: must be ``"cpu"`` (numpy).
        optimize: accepted for a uniform loader signature; has no effect.
        nintra: intra-op threads (validated, >= 1; numpy runs one thread here).
        ninter: inter-op threads (validated, >= 1).
        precision: ``"fp32"`` or ``"auto"`` (which is fp32 here: charges are exact
            integers anyway).

    Returns:
        A :class:`SyntheticGenerator`.

    Raises:
        UsageError: for a checkpoint, a device other than cpu or another precision.

    Example:
        >>> load_synthetic().name
        'synthetic'
        >>> load_synthetic(device="cuda")
        Traceback (most recent call last):
        ...
        bgcache.errors.UsageError: the synthetic generator runs on numpy: device must be 'cpu', got 'cuda'
    """
    if checkpoint is not None:
        raise UsageError(
            f"the synthetic generator takes no checkpoint, got {str(checkpoint)!r}: "
            "leave the checkpoint out"
        )
    if device != "cpu":
        raise UsageError(
            f"the synthetic generator runs on numpy: device must be 'cpu', got {device!r}"
        )
    if precision not in ("fp32", "auto"):
        raise UsageError(f"the synthetic generator only has precision 'fp32', got {precision!r}")
    validate_threads(nintra, ninter)
    del optimize
    return SyntheticGenerator(name)


__all__ = [
    "CHARGE_MIN",
    "GENERATOR_VERSION",
    "NOTE",
    "SyntheticGenerator",
    "load_reference",
    "load_synthetic",
]
