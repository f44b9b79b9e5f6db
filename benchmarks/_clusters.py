"""Other ways of finding clusters, measured beside bgcache's own by
``benchmarks/import_compare.py --parts clusters`` (run as ``python benchmarks/NAME.py``).

* :func:`union_find_labels`: bgcache's clustering until scipy came in (commit f308e3d): the
  four forward neighbours of each fired pixel in a lookup table of the whole event, then a
  vectorised union-find (hooking of roots, path compression) in numpy;
* :func:`ndimage_labels`: ``scipy.ndimage.label`` on the event's dense image, rebuilt from
  the sparse hits, 8-connected within each sensor's plane;
* :func:`csgraph_pixel_labels`: ``scipy.sparse.csgraph.connected_components`` over the
  links of :func:`union_find_labels`, a node per pixel.

Each gives a label per fired pixel; :func:`clusters_from_labels` makes the clusters' sizes,
charges and extents from labels as bgcache did before (``np.unique``, ``np.bincount``,
``reduceat``), which :meth:`~bgcache.clusters.ClusterStatistics.count` adds to the
histograms as ``add`` does, so that every method is timed for clusters and histograms alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bgcache.clusters import Clusters
from bgcache.geometry import N_SENSORS, N_U, N_V
from bgcache.hits import SparseEvent

#: The whole-event lookup table of :func:`union_find_labels` (29 MiB of int32).
EVENT_LOOKUP_SIZE = N_SENSORS * N_U * N_V + N_V + 2
#: 8-connectivity within a sensor's (u, v) plane, none across sensors.
PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
PLANE_8[1] = True


def _links(p: np.ndarray, lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (pixel, forward neighbour) of sorted packed pixel indices ``p``."""
    n = int(p.shape[0])
    rest = p % (N_U * N_V)
    u, v = rest // N_V, rest % N_V
    lookup[p] = np.arange(n, dtype=np.int32)
    starts, ends = [], []
    for step, ok in (
        (1, v < N_V - 1),
        (N_V - 1, (u < N_U - 1) & (v > 0)),
        (N_V, u < N_U - 1),
        (N_V + 1, (u < N_U - 1) & (v < N_V - 1)),
    ):
        at = lookup[p + step].astype(np.int64)
        hit = ok & (at >= 0)
        starts.append(np.flatnonzero(hit))
        ends.append(at[hit])
    lookup[p] = -1
    return np.concatenate(starts), np.concatenate(ends)


def union_find_labels(event: SparseEvent, lookup: np.ndarray) -> np.ndarray:
    """Per pixel, the position of its cluster's first pixel (f308e3d's ``cluster_labels``)."""
    p = event.pixel_index.astype(np.int64)
    a, b = _links(p, lookup)
    parent = np.arange(p.shape[0], dtype=np.int64)
    while a.size:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            break
        a, b, ra, rb = a[differ], b[differ], ra[differ], rb[differ]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))  # hook roots
        while True:  # compress: every pixel points at its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    return parent


def csgraph_pixel_labels(event: SparseEvent, lookup: np.ndarray) -> np.ndarray:
    """Per pixel, its connected component over the pixel links (a node per pixel)."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    p = event.pixel_index.astype(np.int64)
    a, b = _links(p, lookup)
    n = int(p.shape[0])
    graph = coo_array((np.ones(a.shape[0]), (a, b)), shape=(n, n)).tocsr()
    labels: np.ndarray = connected_components(graph, directed=False)[1]
    return labels


def ndimage_labels(event: SparseEvent, dense: np.ndarray) -> np.ndarray:
    """Per pixel, its label by ``scipy.ndimage.label`` of the dense image (``dense``: a
    (40, 250, 768) bool array, all False, left so)."""
    from scipy import ndimage

    dense[event.sensor, event.u, event.v] = True
    image, _ = ndimage.label(dense, structure=PLANE_8)
    dense[event.sensor, event.u, event.v] = False
    labels: np.ndarray = image[event.sensor, event.u, event.v]
    return labels


def canonical(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in the order of their first pixel (to compare methods)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.shape[0], dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.shape[0])
    out: np.ndarray = rank[inverse]
    return out


def clusters_from_labels(event: SparseEvent, labels: np.ndarray) -> Clusters:
    """The clusters of per-pixel labels, as f308e3d's ``find_clusters`` made them."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    k = int(first.shape[0])
    size = np.bincount(inverse, minlength=k)
    charge = np.bincount(inverse, weights=event.charge, minlength=k).astype(np.int64)
    order = np.argsort(inverse, kind="stable")
    bounds = np.zeros(k, dtype=np.int64)
    if k > 1:
        np.cumsum(size[:-1], out=bounds[1:])
    extents = []
    for column in (event.u, event.v):
        c = column.astype(np.int64)[order]
        extents.append(np.maximum.reduceat(c, bounds) - np.minimum.reduceat(c, bounds) + 1)
    return Clusters(event.sensor[first], size, charge, extents[0], extents[1])


def same_clusters(a: Clusters, b: Clusters) -> bool:
    fields: Any = ("sensor", "size", "charge", "extent_u", "extent_v")
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)
