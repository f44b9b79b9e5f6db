"""Occupancy and charge statistics of many events, compared with the Geant4 reference.

This module owns :class:`PoolStatistics` (running counts over events: hits per event,
hits and charge sum per sensor, their per-event second moments and cross products, the
charge histogram of fired pixels, optionally cluster histograms from
:mod:`bgcache.clusters`), the distances and ratios every comparison uses
(:func:`ks_statistic`, :func:`wasserstein_1`, :func:`sample_distances`,
:func:`ratio_with_error`), the comparison with the packaged Geant4 reference figures
(:func:`compare_with_reference`, :func:`reference_charge_spectrum`) and a plain-text
rendering of it (:func:`format_comparison_table`); :mod:`bgcache.compare` compares two
pools with the same pieces. It needs numpy only: never torch or matplotlib.

Layer 1 is sensors 0..15, layer 2 is sensors 16..39 (DESIGN 1). Every sensor has the
same number of pixels, so a layer's occupancy is the mean of its sensors' occupancies.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bgcache.clusters import BATCHES, ClusterStatistics
from bgcache.errors import EventError, UsageError
from bgcache.geometry import N_SENSORS, PIXELS_PER_SENSOR, SENSORS
from bgcache.hits import SparseEvent
from bgcache.reference import load_reference

#: Charge histogram bins: one per ADU 0..255; charges above 255 (merged digits) count in 255.
N_CHARGE_BINS = 256
#: Sensor index ranges of the two PXD layers.
LAYER_SENSORS: dict[int, range] = {1: range(0, 16), 2: range(16, N_SENSORS)}
#: Column names of :func:`format_comparison_table` rows.
COMPARISON_COLUMNS = ("quantity", "pool", "reference", "pool / reference")


class PoolStatistics:
    """Running occupancy and charge statistics of events; partial statistics merge.

    Attributes:
        hits_per_sensor: fired pixels per sensor summed over events (int64, 40).
        charge_sum_per_sensor: charge (ADU) summed over fired pixels per sensor (int64, 40).
        charge_histogram: fired pixels per charge, index = ADU 0..255 (int64, 256);
            bin 255 also counts charges above 255.
        charge_batches: the charge histogram in :data:`~bgcache.clusters.BATCHES` groups
            of events (event i in group i % BATCHES; int64, BATCHES x 256): its spread over
            events, which the tests of :mod:`bgcache.significance` need (pixels of one event
            are not independent, events are).
        hits_sq_per_sensor: the square of each event's hits per sensor, summed (int64, 40).
        hits_cross: each event's hits per sensor times hits per sensor, summed (int64,
            40 x 40): with the sums, the covariance of sensor occupancies over events.
        clusters: cluster histograms (:class:`~bgcache.clusters.ClusterStatistics`) when
            made with ``clusters=True``, else None.

    Example:
        >>> stats = PoolStatistics()
        >>> stats.add(SparseEvent([0, 0, 20], [1, 1, 3], [5, 6, 0], [20, 7, 30]))
        >>> stats.n_events, stats.n_hits, stats.hits_per_sensor[[0, 20]].tolist()
        (1, 3, [2, 1])
        >>> stats.mean_charge_per_sensor()[[0, 1, 20]].tolist(), stats.mean_charge()
        ([13.5, 0.0, 30.0], 19.0)
    """

    def __init__(self, *, clusters: bool = False) -> None:
        self._hits_per_event = array("q")
        self.hits_per_sensor = np.zeros(N_SENSORS, dtype=np.int64)
        self.charge_sum_per_sensor = np.zeros(N_SENSORS, dtype=np.int64)
        self.charge_histogram = np.zeros(N_CHARGE_BINS, dtype=np.int64)
        self.charge_batches = np.zeros((BATCHES, N_CHARGE_BINS), dtype=np.int64)
        self.hits_sq_per_sensor = np.zeros(N_SENSORS, dtype=np.int64)
        self.hits_cross = np.zeros((N_SENSORS, N_SENSORS), dtype=np.int64)
        self.clusters = ClusterStatistics() if clusters else None

    # -- accumulation -----------------------------------------------------------------
    def add(self, event: SparseEvent) -> None:
        """Add one event's hits (vectorised: three ``np.bincount`` calls).

        Raises:
            EventError: if a sensor index is outside 0..39.
            MissingDependencyError: counting clusters without scipy.
        """
        sensor = event.sensor
        per_sensor = np.bincount(sensor, minlength=N_SENSORS)
        if per_sensor.size != N_SENSORS:
            raise EventError(
                f"hit sensor index out of range: expected 0..{N_SENSORS - 1}, found {int(sensor.max())}"
            )
        charge = event.charge
        charge_sum = np.bincount(sensor, weights=charge, minlength=N_SENSORS)
        capped = np.minimum(charge, N_CHARGE_BINS - 1) if charge.dtype != np.uint8 else charge
        if self.clusters is not None:  # first: without scipy, nothing is counted
            self.clusters.add(event)
        batch = self.n_events % BATCHES
        self._hits_per_event.append(event.n_hits)
        self.hits_per_sensor += per_sensor
        self.hits_sq_per_sensor += per_sensor * per_sensor
        self.hits_cross += np.outer(per_sensor, per_sensor)
        self.charge_sum_per_sensor += np.rint(charge_sum).astype(np.int64)
        charges = np.bincount(capped, minlength=N_CHARGE_BINS)
        self.charge_histogram += charges
        self.charge_batches[batch] += charges

    def add_events(self, events: Iterable[SparseEvent]) -> PoolStatistics:
        """Add several events; returns ``self`` so that calls chain.

        Example:
            >>> ev = SparseEvent([1], [0], [0], [9])
            >>> PoolStatistics().add_events([ev, ev]).n_events
            2
        """
        for event in events:
            self.add(event)
        return self

    def merge(self, other: PoolStatistics) -> PoolStatistics:
        """Add the counts of ``other`` (e.g. from another worker) to these; returns ``self``.

        Example:
            >>> a = PoolStatistics().add_events([SparseEvent([0], [0], [0], [9])])
            >>> b = PoolStatistics().add_events([SparseEvent([5], [0], [0], [11])])
            >>> a.merge(b).hits_per_event.tolist(), a.mean_charge()
            ([1, 1], 10.0)
        """
        if not isinstance(other, PoolStatistics):
            raise TypeError(f"can only merge PoolStatistics, got {type(other).__name__}")
        if (self.clusters is None) != (other.clusters is None):
            raise TypeError("can only merge statistics that both count clusters or both do not")
        shift = self.n_events  # other's event j is event shift + j here: its group moves
        self._hits_per_event.extend(other._hits_per_event)
        for name in _SUMS:
            counts = getattr(other, name)
            if name == "charge_batches":
                counts = np.roll(counts, shift, axis=0)
            getattr(self, name)[...] += counts
        if self.clusters is not None and other.clusters is not None:
            self.clusters.merge(other.clusters)
        return self

    # -- figures ----------------------------------------------------------------------
    @property
    def n_events(self) -> int:
        """Events added so far."""
        return len(self._hits_per_event)

    @property
    def n_hits(self) -> int:
        """Fired pixels over all events."""
        return int(self.hits_per_sensor.sum())

    @property
    def hits_per_event(self) -> np.ndarray:
        """Fired pixels of each event, in the order added (int64 copy)."""
        return np.array(self._hits_per_event, dtype=np.int64)

    def hits_summary(self) -> dict[str, float]:
        """Mean, standard deviation, min and max of hits per event (all 0 without events).

        Example:
            >>> ev1, ev2 = SparseEvent([0], [0], [0], [9]), SparseEvent([0, 1], [0, 0], [0, 0], [9, 9])
            >>> PoolStatistics().add_events([ev1, ev2]).hits_summary()
            {'mean': 1.5, 'std': 0.5, 'min': 1.0, 'max': 2.0}
        """
        h = self.hits_per_event if self._hits_per_event else np.zeros(1)
        return {
            "mean": float(h.mean()),
            "std": float(h.std()),
            "min": float(h.min()),
            "max": float(h.max()),
        }

    def occupancy_per_sensor(self) -> np.ndarray:
        """Mean fraction of fired pixels per sensor (40 floats; zeros without events)."""
        return self.hits_per_sensor / (max(self.n_events, 1) * PIXELS_PER_SENSOR)

    def occupancy_covariance(self) -> np.ndarray:
        """Covariance over events of the sensors' occupancies (40 x 40; zeros with < 2 events)."""
        n = self.n_events
        if n < 2:
            return np.zeros((N_SENSORS, N_SENSORS))
        mean = self.hits_per_sensor / n
        cov = (self.hits_cross / n - np.outer(mean, mean)) * (n / (n - 1))
        result: np.ndarray = cov / float(PIXELS_PER_SENSOR) ** 2
        return result

    def occupancy_error(self, sensors: slice | Sequence[int] = slice(None)) -> float:
        """Standard error of the mean occupancy of some sensors (default all), from the
        covariance over events (so correlated sensors count as such).

        Example:
            >>> a = SparseEvent([0, 0], [0, 1], [0, 0], [9, 9])
            >>> b = SparseEvent([0], [0], [0], [9])
            >>> s = PoolStatistics().add_events([a, b])
            >>> round(s.occupancy_error([0]) * 192_000, 3)
            0.5
        """
        cov = self.occupancy_covariance()
        index = np.arange(N_SENSORS)[sensors]
        k = index.size
        var = float(cov[np.ix_(index, index)].sum()) / (k * k) if k else 0.0
        return float(np.sqrt(max(var, 0.0) / self.n_events)) if self.n_events else 0.0

    def occupancy_errors(self) -> np.ndarray:
        """Standard error of each sensor's mean occupancy (40 floats)."""
        return np.array([self.occupancy_error([i]) for i in range(N_SENSORS)])

    def correlation(self) -> np.ndarray:
        """Correlation over events of the sensors' occupancies (40 x 40); NaN where a
        sensor's occupancy does not vary (or with < 2 events)."""
        cov = self.occupancy_covariance()
        sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            rho: np.ndarray = cov / np.outer(sigma, sigma)
        rho[np.outer(sigma, sigma) == 0] = np.nan
        clipped: np.ndarray = np.clip(rho, -1.0, 1.0)
        return clipped

    def occupancy(self, layer: int | None = None) -> float:
        """Mean fraction of fired pixels over all sensors, or over one layer (1 or 2).

        Example:
            >>> stats = PoolStatistics().add_events([SparseEvent([0], [0], [0], [9])])
            >>> stats.occupancy(1) == 1 / (16 * 192_000), stats.occupancy(2)
            (True, 0.0)
        """
        return float(self.occupancy_per_sensor()[_layer_slice(layer)].mean())

    def mean_charge_per_sensor(self) -> np.ndarray:
        """Mean charge (ADU) of fired pixels per sensor (40 floats; 0 where none fired)."""
        return _ratio(self.charge_sum_per_sensor, self.hits_per_sensor)

    def mean_charge(self, layer: int | None = None) -> float:
        """Mean charge (ADU) of fired pixels over all sensors or one layer (0 if none fired)."""
        sel = _layer_slice(layer)
        hits = int(self.hits_per_sensor[sel].sum())
        return int(self.charge_sum_per_sensor[sel].sum()) / hits if hits else 0.0

    def charge_spectrum(self) -> np.ndarray:
        """Fraction of fired pixels per charge, index = ADU 0..255 (256 floats summing to 1).

        All zeros if no pixel fired.
        """
        total = int(self.charge_histogram.sum())
        return self.charge_histogram / total if total else np.zeros(N_CHARGE_BINS)

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self, *, include_hits_per_event: bool = False) -> dict[str, Any]:
        """The statistics as JSON-serialisable plain Python types.

        Args:
            include_hits_per_event: also list every event's hit count and the charge
                histogram's groups of events (needed by :meth:`from_dict`; one int per
                event, 8,192 for the groups).

        Example:
            >>> d = PoolStatistics().to_dict()
            >>> d["n_events"], d["occupancy"], d["hits_per_event"]["mean"]
            (0, 0.0, 0.0)
        """
        out: dict[str, Any] = {
            "n_events": self.n_events,
            "n_hits": self.n_hits,
            "hits_per_event": self.hits_summary(),
            "occupancy": self.occupancy(),
            "mean_charge": self.mean_charge(),
            "occupancy_per_sensor": self.occupancy_per_sensor().tolist(),
            "mean_charge_per_sensor": self.mean_charge_per_sensor().tolist(),
            "hits_per_sensor": self.hits_per_sensor.tolist(),
            "charge_sum_per_sensor": self.charge_sum_per_sensor.tolist(),
            "charge_histogram": self.charge_histogram.tolist(),
            "hits_sq_per_sensor": self.hits_sq_per_sensor.tolist(),
            "hits_cross": self.hits_cross.tolist(),
        }
        if self.clusters is not None:
            out["clusters"] = self.clusters.to_dict()
        if include_hits_per_event:
            out["hits_per_event_list"] = self.hits_per_event.tolist()
            out["charge_batches"] = self.charge_batches.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PoolStatistics:
        """Rebuild from :meth:`to_dict` output made with ``include_hits_per_event=True``.

        Raises:
            UsageError: if a count is missing or has the wrong length.

        Example:
            >>> s = PoolStatistics().add_events([SparseEvent([3], [0], [0], [9])])
            >>> PoolStatistics.from_dict(s.to_dict(include_hits_per_event=True)) == s
            True
        """
        out = cls()
        fields = _SUMS
        missing = [k for k in (*fields, "hits_per_event_list") if k not in data]
        if missing:
            raise UsageError(
                f"statistics lack the field {missing[0]!r}: write them with "
                "to_dict(include_hits_per_event=True)"
            )
        for name in fields:
            target = getattr(out, name)
            values = np.asarray(data[name], dtype=np.int64)
            if values.shape != target.shape:
                raise UsageError(
                    f"statistics field {name!r} must have {target.size} values, got shape {values.shape}"
                )
            target[:] = values
        out._hits_per_event.extend(int(n) for n in data["hits_per_event_list"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoolStatistics):
            return NotImplemented
        return (
            self._hits_per_event == other._hits_per_event
            and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _SUMS)
            and self.clusters == other.clusters
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"PoolStatistics(n_events={self.n_events}, occupancy={100 * self.occupancy():.3f} %, "
            f"mean_charge={self.mean_charge():.2f})"
        )


#: The summed arrays of :class:`PoolStatistics` (merged by adding, serialised by name).
_SUMS = (
    "hits_per_sensor",
    "charge_sum_per_sensor",
    "charge_histogram",
    "hits_sq_per_sensor",
    "hits_cross",
    "charge_batches",
)


def _layer_slice(layer: int | None) -> slice:
    if layer is None:
        return slice(0, N_SENSORS)
    if layer not in LAYER_SENSORS:
        raise UsageError(f"PXD layer must be 1 or 2, got {layer!r}")
    r = LAYER_SENSORS[layer]
    return slice(r.start, r.stop)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise as float64, 0 where den == 0 (no warning)."""
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=np.asarray(den) != 0)
    return out


def _rel(measured: float, reference: float) -> float | None:
    return measured / reference if reference else None


def reference_charge_spectrum(reference: Mapping[str, Any] | None = None) -> np.ndarray:
    """Fraction of FIRED pixels per charge in the reference, index = ADU 0..255.

    The reference histogram counts all pixels; its bin [-1, 1) holds the zeros and is
    dropped. A bin wider than one ADU (the empty [1, 7)) is spread evenly over its ADUs.

    Args:
        reference: figures as from :func:`bgcache.reference.load_reference`
            (default: that).

    Returns:
        256 float64 values summing to 1.

    Raises:
        UsageError: if the histogram and its bin edges do not fit together.

    Example:
        >>> p = reference_charge_spectrum()
        >>> round(float(p.sum()), 9), float(p[:7].sum()), bool(p[7] > p[100] > 0)
        (1.0, 0.0, True)
    """
    ref = _load(reference)
    edges = np.asarray(ref["charge_bin_edges"], dtype=np.float64)
    counts = np.asarray(ref["charge_histogram"], dtype=np.float64)
    if edges.ndim != 1 or edges.shape[0] != counts.shape[0] + 1:
        raise UsageError(
            f"reference charge histogram has {counts.shape[0]} bins but {edges.shape[0]} edges"
        )
    spectrum = np.zeros(N_CHARGE_BINS, dtype=np.float64)
    for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True):
        first, stop = max(int(np.ceil(lo)), 1), min(int(np.ceil(hi)), N_CHARGE_BINS)
        if stop > first:
            spectrum[first:stop] += n / (stop - first)
    total = spectrum.sum()
    if total <= 0:
        raise UsageError("reference charge histogram has no fired pixels (charge >= 1)")
    result: np.ndarray = spectrum / total
    return result


def ks_statistic(p: np.ndarray, q: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance: the largest gap between the cumulative sums of p and q.

    Example:
        >>> ks_statistic(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]))
        0.5
    """
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q)), initial=0.0))


def wasserstein_1(p: np.ndarray, q: np.ndarray, width: float = 1.0) -> float:
    """Wasserstein-1 (earth mover's) distance of two normalised histograms over the same
    bins of equal ``width``: the area between their cumulative sums, in the bins' unit.

    Example:
        >>> wasserstein_1(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
        2.0
    """
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() * width)


def sample_distances(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """Two-sample Kolmogorov-Smirnov and Wasserstein-1 distances of two samples (exact, from
    their empirical distribution functions); ``(None, None)`` if either is empty.

    Example:
        >>> ks, w1 = sample_distances(np.array([1, 2, 3]), np.array([2, 3, 4]))
        >>> round(ks, 6), w1
        (0.333333, 1.0)
    """
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if not a.size or not b.size:
        return None, None
    values = np.union1d(a, b)
    fa = np.searchsorted(a, values, side="right") / a.size
    fb = np.searchsorted(b, values, side="right") / b.size
    gap = np.abs(fa - fb)
    return float(gap.max()), float((gap[:-1] * np.diff(values)).sum())


def ratio_with_error(
    a: float, a_error: float, b: float, b_error: float
) -> tuple[float | None, float | None]:
    """``a / b`` and its standard error from those of ``a`` and ``b`` (independent,
    first order); ``(None, None)`` where ``b`` is 0.

    Example:
        >>> ratio_with_error(2.0, 0.2, 4.0, 0.0)
        (0.5, 0.05)
    """
    if not b:
        return None, None
    r = a / b
    rel = np.hypot(a_error / a if a else 0.0, b_error / b)
    return float(r), float(abs(r) * rel)


def _load(reference: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return load_reference() if reference is None else reference


def compare_with_reference(
    stats: PoolStatistics, reference: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Compare pool statistics with the Geant4 reference figures (JSON-serialisable).

    Args:
        stats: statistics of the pool (or sample) to compare.
        reference: figures as from :func:`bgcache.reference.load_reference`
            (default: that).

    Returns:
        A dict: ``n_events``, ``n_hits``, ``hits_per_event`` (mean/std/min/max);
        ``sensors``: 40 dicts (``index``, ``layer``, ``ladder``, ``sensor``, ``vxd_id``,
        ``occupancy``, ``reference_occupancy``, ``occupancy_ratio``, ``mean_charge``,
        ``reference_mean_charge``, ``mean_charge_ratio``); ``layers``: one such dict per
        layer (with ``first_sensor`` and ``last_sensor``); ``overall``: the same over all
        sensors; occupancies come with their standard errors over events
        (``occupancy_error``, ``occupancy_ratio_error``: the reference's figures have none);
        ``charge_spectrum``: ``measured`` and ``reference`` fractions of fired pixels per
        ADU 0..255, ``ks_statistic`` (largest gap of their cumulative sums; None without
        hits), ``wasserstein_1`` (in ADU), ``reference_threshold`` (lowest reference charge) and
        ``fraction_below_threshold`` (of pool hits). Occupancies are fractions (not %);
        a ratio is pool / reference, None where the reference is 0.

    Example:
        >>> from bgcache.models.synthetic import load_synthetic
        >>> stats = PoolStatistics().add_events(load_synthetic().events([(0, 0), (0, 1)]))
        >>> c = compare_with_reference(stats)
        >>> c["n_events"], 0.95 < c["overall"]["occupancy_ratio"] < 1.05
        (2, True)
        >>> c["sensors"][39]["vxd_id"], c["charge_spectrum"]["ks_statistic"] < 0.02
        (19520, True)
    """
    ref = _load(reference)
    ref_occ = np.asarray(ref["occupancy_per_sensor"], dtype=np.float64)
    ref_mean = np.asarray(ref["mean_charge_per_sensor"], dtype=np.float64)
    if ref_occ.shape != (N_SENSORS,) or ref_mean.shape != (N_SENSORS,):
        raise UsageError(
            f"reference per-sensor figures must have {N_SENSORS} values, got "
            f"{ref_occ.shape} and {ref_mean.shape}"
        )
    occ = stats.occupancy_per_sensor()
    mean = stats.mean_charge_per_sensor()

    def figures(layer: int | None) -> dict[str, Any]:
        sel = _layer_slice(layer)
        weight = float(ref_occ[sel].sum())
        ref_m = float(ref_occ[sel] @ ref_mean[sel]) / weight if weight else 0.0
        if layer is None:  # the histogram is the reference's own figure over all sensors
            ref_m = float(expected @ np.arange(N_CHARGE_BINS))
        occ_pair = (float(occ[sel].mean()), float(ref_occ[sel].mean()))
        return _figures(occ_pair, (stats.mean_charge(layer), ref_m), stats.occupancy_error(sel))

    measured = stats.charge_spectrum()
    expected = reference_charge_spectrum(ref)
    threshold = int(np.flatnonzero(expected)[0])
    errors = stats.occupancy_errors()
    sensors = [
        s._asdict()
        | _figures(
            (float(occ[s.index]), float(ref_occ[s.index])),
            (mean[s.index], ref_mean[s.index]),
            float(errors[s.index]),
        )
        for s in SENSORS
    ]
    layers = [
        {"layer": layer, "first_sensor": r.start, "last_sensor": r.stop - 1} | figures(layer)
        for layer, r in LAYER_SENSORS.items()
    ]
    return {
        "n_events": stats.n_events,
        "n_hits": stats.n_hits,
        "hits_per_event": stats.hits_summary(),
        "sensors": sensors,
        "layers": layers,
        "overall": figures(None),
        "charge_spectrum": {
            "measured": measured.tolist(),
            "reference": expected.tolist(),
            "ks_statistic": ks_statistic(measured, expected) if stats.n_hits else None,
            "wasserstein_1": wasserstein_1(measured, expected) if stats.n_hits else None,
            "reference_threshold": threshold,
            "fraction_below_threshold": float(measured[:threshold].sum()),
        },
    }


def _figures(
    occupancy: tuple[float, float], charge: tuple[float, float], error: float
) -> dict[str, Any]:
    o, ro = float(occupancy[0]), float(occupancy[1])
    m, rm = float(charge[0]), float(charge[1])
    return {
        "occupancy": o,
        "occupancy_error": error,
        "reference_occupancy": ro,
        "occupancy_ratio": _rel(o, ro),
        "occupancy_ratio_error": ratio_with_error(o, error, ro, 0.0)[1],
        "mean_charge": m,
        "reference_mean_charge": rm,
        "mean_charge_ratio": _rel(m, rm),
    }


def format_comparison_table(comparison: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """Summary rows of a :func:`compare_with_reference` result, as text.

    Columns are :data:`COMPARISON_COLUMNS`: quantity, pool, reference, pool / reference.

    Example:
        >>> stats = PoolStatistics().add_events([SparseEvent([0], [0], [0], [20])])
        >>> rows = format_comparison_table(compare_with_reference(stats))
        >>> rows[0]
        ('events', '1', '', '')
        >>> rows[-1][0]
        'charge spectrum W1 distance [ADU]'
    """

    def pct(x: float) -> str:
        return f"{100 * x:.4f} %"

    def ratio(x: float | None) -> str:
        return "" if x is None else f"{x:.3f}"

    hits = comparison["hits_per_event"]
    rows: list[tuple[str, str, str, str]] = [
        ("events", str(comparison["n_events"]), "", ""),
        ("hits per event (mean ± std)", f"{hits['mean']:.0f} ± {hits['std']:.0f}", "", ""),
    ]
    parts = [("all sensors", comparison["overall"])]
    parts += [(f"layer {d['layer']}", d) for d in comparison["layers"]]
    rows += [
        (
            f"occupancy, {name}",
            f"{pct(d['occupancy'])} ± {100 * d['occupancy_error']:.4f}",
            pct(d["reference_occupancy"]),
            ratio(d["occupancy_ratio"])
            + (
                "" if d["occupancy_ratio_error"] is None else f" ± {d['occupancy_ratio_error']:.3f}"
            ),
        )
        for name, d in parts
    ]
    rows += [
        (
            f"mean charge [ADU], {name}",
            f"{d['mean_charge']:.2f}",
            f"{d['reference_mean_charge']:.2f}",
            ratio(d["mean_charge_ratio"]),
        )
        for name, d in parts
    ]
    spec = comparison["charge_spectrum"]
    ks = spec["ks_statistic"]
    below = f"hits below {spec['reference_threshold']} ADU"
    rows.append((below, pct(spec["fraction_below_threshold"]), pct(0.0), ""))
    rows.append(("charge spectrum KS distance", "" if ks is None else f"{ks:.4f}", "0", ""))
    w1 = spec["wasserstein_1"]
    rows.append(("charge spectrum W1 distance [ADU]", "" if w1 is None else f"{w1:.3f}", "0", ""))
    return rows


__all__ = [
    "COMPARISON_COLUMNS",
    "LAYER_SENSORS",
    "N_CHARGE_BINS",
    "PoolStatistics",
    "compare_with_reference",
    "format_comparison_table",
    "ks_statistic",
    "ratio_with_error",
    "reference_charge_spectrum",
    "sample_distances",
    "wasserstein_1",
]
