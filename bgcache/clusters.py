"""Clusters of fired pixels: 8-connected groups on one sensor, and their distributions.

A cluster is a maximal set of fired pixels of one sensor in which each pixel touches
another by a side or a corner (8-connectivity, as PXD clustering joins neighbours).

How they are found: the fired pixels of an event are sorted by ``(sensor, u, v)``
(:mod:`bgcache.hits`), so the runs of consecutive ``v`` in one row of a sensor are found by
comparing each pixel with the next. Two runs of adjacent rows touch when their ``v`` ranges,
widened by one on each side, overlap. Each run gets the keys ``row * 770 + v + 1`` of its
first and last pixel, with a free row after each sensor's last and a free column on each
side of a row, so that no widened range reaches another row or sensor; the keys of all
runs are sorted, so the runs below a run are one range of them, found by two binary
searches (``np.searchsorted``) per run and no lookup table. The clusters are the connected
components of that graph of runs (about half as many nodes as pixels), from
``scipy.sparse.csgraph.connected_components``; size, charge and extents come from the runs
(a cluster's rows are its first and last run's, its ``v`` range the widest of its runs).
Measured on full-size events (docs/performance.md, clusters), with the same clusters: 2.2x
the events/s of the numpy union-find over pixel links that this replaced (the gain is the
runs': the same ``connected_components`` over the pixel links, a node per pixel, is no
faster than that union-find) and 6x that of ``scipy.ndimage.label`` on the dense images.

This needs scipy (``pip install 'bgcache[compare]'``), imported at the first event: only
``bgcache compare`` counts clusters, and it needs scipy for its tests anyway, so there is no
second, numpy-only way to find them.

:class:`ClusterStatistics` keeps histograms of cluster size (pixels), charge (ADU), and
extent in u and v (pixels), and clusters per event; its memory does not grow with events.
Each histogram is also kept in :data:`BATCHES` interleaved groups of events (event ``i`` in
group ``i % BATCHES``), so that its spread over events can be measured: the pixels and
clusters of one event are not independent, events are (:mod:`bgcache.significance`).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from bgcache.errors import MissingDependencyError
from bgcache.geometry import N_U, N_V
from bgcache.hits import SparseEvent

#: Histogram ranges: values 0 .. bins-1, the last bin also counts everything above it.
SIZE_BINS = 65
CHARGE_BINS = 2049
EXTENT_BINS = 33
#: Groups of events each histogram is also kept in (event i in group i % BATCHES): enough
#: for the spread over events of a bin to be measured with 31 degrees of freedom, few enough
#: that the groups cost 0.6 MB for the four cluster histograms.
BATCHES = 32
#: Key stride of a row: ``v + 1`` in 1..768, with a free column on each side of a row.
_ROW = N_V + 2
#: Rows of a sensor's keys: its 250 and a free row after them.
_SENSOR_ROWS = N_U + 1


def _connected_components() -> tuple[Any, Any]:
    """scipy's CSR array and connected components, imported when first needed."""
    try:
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import connected_components
    except ImportError as exc:
        raise MissingDependencyError(
            f"finding clusters needs scipy, which cannot be imported ({exc}): "
            "pip install 'bgcache[compare]'"
        ) from exc
    return csr_array, connected_components


@dataclass(frozen=True)
class Clusters:
    """The clusters of one event (one entry per cluster, in pixel order of their first pixel)."""

    sensor: np.ndarray
    size: np.ndarray
    charge: np.ndarray
    extent_u: np.ndarray
    extent_v: np.ndarray

    def __len__(self) -> int:
        return int(self.size.shape[0])


@dataclass(frozen=True)
class _Runs:
    """An event's runs and their clusters.

    ``first``/``last``: first and last pixel of each run; ``of_pixel``: the run of each
    pixel; ``cluster``: the cluster of each run, numbered in the order of the clusters' first
    runs; ``order``: the runs grouped by cluster (in run order within one), cluster ``c``'s
    at ``order[start[c] : start[c] + count[c]]``.
    """

    first: np.ndarray
    last: np.ndarray
    of_pixel: np.ndarray
    cluster: np.ndarray
    order: np.ndarray
    start: np.ndarray
    count: np.ndarray


def _group(cluster: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(cluster, kind="stable")
    count = np.bincount(cluster, minlength=k)
    start = np.zeros(k, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])
    return order, start, count


def _runs(event: SparseEvent) -> _Runs:
    """The runs of an event's fired pixels and their connected components (see the module
    docstring)."""
    csr_array, connected_components = _connected_components()
    n = event.n_hits
    if not n:
        empty = np.zeros(0, np.int64)
        return _Runs(empty, empty, empty, empty, empty, empty, empty)
    key = event.sensor.astype(np.intp) * _SENSOR_ROWS
    key += event.u
    key *= _ROW
    key += event.v
    key += 1
    # a new run wherever the next pixel is not the next key (another row or sensor never is)
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(key[1:], key[:-1] + 1, out=new_run[1:])
    first = np.flatnonzero(new_run)
    n_runs = int(first.shape[0])
    last = np.empty(n_runs, dtype=np.intp)
    last[:-1] = first[1:] - 1
    last[-1] = n - 1
    of_pixel = np.cumsum(new_run, dtype=np.intp)
    of_pixel -= 1
    # the runs below run r: those ending at or after its first key - 1 and starting at or
    # before its last key + 1, in the next row: lo <= s < hi
    starts, ends = key[first], key[last]
    lo = np.searchsorted(ends, starts + (_ROW - 1))
    hi = np.searchsorted(starts, ends + (_ROW + 1), side="right")
    below = np.maximum(hi - lo, 0)
    # the graph in CSR form: run r's row holds lo .. hi - 1
    indptr = np.zeros(n_runs + 1, dtype=np.intp)
    np.cumsum(below, out=indptr[1:])
    links = int(indptr[-1])
    indices = np.arange(links, dtype=np.intp) + np.repeat(lo - indptr[:-1], below)
    graph = csr_array((np.ones(links), indices, indptr), shape=(n_runs, n_runs))
    k, cluster = connected_components(graph, directed=False)
    order, start, count = _group(cluster, k)
    first_run = order[start]
    if k > 1 and bool((first_run[1:] < first_run[:-1]).any()):
        # scipy numbers components from their lowest node today; do not depend on it
        rank = np.empty(k, dtype=cluster.dtype)
        rank[np.argsort(first_run)] = np.arange(k, dtype=cluster.dtype)
        cluster = rank[cluster]
        order, start, count = _group(cluster, k)
    return _Runs(first, last, of_pixel, cluster, order, start, count)


def cluster_labels(event: SparseEvent) -> np.ndarray:
    """The cluster of each fired pixel, numbered 0, 1, ... in the order of the clusters'
    first pixels.

    Raises:
        MissingDependencyError: scipy is not installed.

    Example:
        >>> # (u,v) = (0,0) and (1,1) touch at a corner; (0,5), (1,767) and (3,0) stand alone
        >>> ev = SparseEvent([0, 0, 0, 0, 0], [0, 0, 1, 1, 3], [0, 5, 1, 767, 0], [9] * 5)
        >>> cluster_labels(ev).tolist()
        [0, 1, 0, 2, 3]
    """
    runs = _runs(event)
    labels: np.ndarray = runs.cluster[runs.of_pixel].astype(np.int64)
    return labels


def find_clusters(event: SparseEvent) -> Clusters:
    """The 8-connected clusters of an event's fired pixels (its hits sorted, as in every
    :class:`~bgcache.hits.SparseEvent`), per sensor.

    Raises:
        MissingDependencyError: scipy is not installed.

    Example:
        >>> ev = SparseEvent([0, 0, 0, 1], [0, 1, 9, 0], [0, 1, 9, 0], [5, 7, 2, 4])
        >>> c = find_clusters(ev)
        >>> c.sensor.tolist(), c.size.tolist(), c.charge.tolist(), c.extent_u.tolist()
        ([0, 0, 1], [2, 1, 1], [12, 2, 4], [2, 1, 1])
    """
    runs = _runs(event)
    k = int(runs.start.shape[0])
    if not k:
        empty = np.zeros(0, np.int64)
        return Clusters(np.zeros(0, np.uint8), empty, empty, empty, empty)
    first, last, cluster = runs.first, runs.last, runs.cluster
    size = np.bincount(cluster, weights=last - first + 1, minlength=k).astype(np.int64)
    charge_to = np.cumsum(event.charge, dtype=np.int64)  # charge of a run: a difference
    run_charge = charge_to[last]
    run_charge[1:] -= charge_to[last[:-1]]
    charge = np.bincount(cluster, weights=run_charge, minlength=k).astype(np.int64)
    # a cluster's runs in run order: its first and last run hold its lowest and highest row
    grouped = runs.order
    top, bottom = grouped[runs.start], grouped[runs.start + runs.count - 1]
    u_first = event.u[first].astype(np.int64)
    extent_u = u_first[bottom] - u_first[top] + 1
    # the widest v of each cluster's runs: a running maximum over the grouped runs of
    # cluster * 1024 + v (v < 1024) ends, at a cluster's last run, in cluster * 1024 + its
    # largest v (the same for 1023 - v, the smallest); one pass, where reduceat pays per
    # cluster
    base = np.repeat(np.arange(k, dtype=np.int64) << 10, runs.count)
    v_hi = np.maximum.accumulate(base + event.v[last[grouped]])
    v_lo = np.maximum.accumulate(base + (1023 - event.v[first[grouped]].astype(np.int64)))
    end = runs.start + runs.count - 1
    extent_v = (v_hi[end] & 1023) + (v_lo[end] & 1023) - 1022
    return Clusters(event.sensor[first[top]], size, charge, extent_u, extent_v)


class ClusterStatistics:
    """Running histograms of cluster size, charge, u and v extent; clusters per event.

    Attributes:
        size, charge, extent_u, extent_v: the histograms (int64; bins 0.., the last also
            counting everything above it).
        batches: per histogram name, its counts in :data:`BATCHES` groups of events
            (int64, ``BATCHES x bins``; summed over the groups, the histogram).

    Example:
        >>> stats = ClusterStatistics()
        >>> stats.add(SparseEvent([0, 0, 0], [0, 1, 9], [0, 1, 9], [5, 7, 2]))
        >>> stats.n_clusters, stats.size[:3].tolist(), stats.clusters_per_event.tolist()
        (2, [0, 1, 1], [2])
        >>> stats.batches["size"][0, :3].tolist(), int(stats.batches["size"][1:].sum())
        ([0, 1, 1], 0)
    """

    HISTOGRAMS = ("size", "charge", "extent_u", "extent_v")

    def __init__(self) -> None:
        self._per_event = array("q")
        self.size = np.zeros(SIZE_BINS, dtype=np.int64)
        self.charge = np.zeros(CHARGE_BINS, dtype=np.int64)
        self.extent_u = np.zeros(EXTENT_BINS, dtype=np.int64)
        self.extent_v = np.zeros(EXTENT_BINS, dtype=np.int64)
        self.batches = {
            name: np.zeros((BATCHES, getattr(self, name).size), dtype=np.int64)
            for name in self.HISTOGRAMS
        }

    def add(self, event: SparseEvent) -> None:
        """Find the event's clusters and count them.

        Raises:
            MissingDependencyError: scipy is not installed.
        """
        self.count(find_clusters(event))

    def count(self, found: Clusters) -> None:
        """Count one event's clusters (as :func:`find_clusters` finds them)."""
        batch = len(self._per_event) % BATCHES
        self._per_event.append(len(found))
        for name in self.HISTOGRAMS:
            histogram = getattr(self, name)
            counts = np.bincount(
                np.minimum(getattr(found, name), histogram.size - 1), minlength=histogram.size
            )
            histogram += counts
            self.batches[name][batch] += counts

    def merge(self, other: ClusterStatistics) -> ClusterStatistics:
        """Add the counts of ``other``, whose events follow these; returns ``self``."""
        shift = len(self._per_event)  # other's event j is event shift + j here
        self._per_event.extend(other._per_event)
        for name in self.HISTOGRAMS:
            getattr(self, name)[:] += getattr(other, name)
            self.batches[name] += np.roll(other.batches[name], shift, axis=0)
        return self

    @property
    def n_clusters(self) -> int:
        """Clusters counted."""
        return int(self.size.sum())

    @property
    def clusters_per_event(self) -> np.ndarray:
        """Clusters of each event, in the order added."""
        return np.array(self._per_event, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """The histograms as lists (the last bin of each counts everything above it)."""
        return {
            "n_clusters": self.n_clusters,
            **{name: getattr(self, name).tolist() for name in self.HISTOGRAMS},
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClusterStatistics):
            return NotImplemented
        return (
            self._per_event == other._per_event
            and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in self.HISTOGRAMS)
            and all(np.array_equal(self.batches[n], other.batches[n]) for n in self.HISTOGRAMS)
        )

    __hash__ = None  # type: ignore[assignment]


__all__ = [
    "BATCHES",
    "CHARGE_BINS",
    "EXTENT_BINS",
    "SIZE_BINS",
    "ClusterStatistics",
    "Clusters",
    "cluster_labels",
    "find_clusters",
]
