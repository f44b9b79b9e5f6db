"""Column encoding of a block of sparse events (numpy only).

A block of n events is three columns:

* ``counts`` (uint32, n): hits per event; offsets are their cumulative sum (CSR);
* ``index_delta`` (uint32, total hits): each event's packed pixel indices
  (``sensor*192000 + u*768 + v``, sorted) delta-coded *within the event*: the first value
  is the absolute index, the others the differences to the previous hit (all > 0);
* ``charge`` (uint8, total hits).

Delta coding per event keeps every event decodable on its own (random access needs only
its slice) and makes the index column compress to ~1 byte/hit with Blosc zstd + byte
shuffle (see ``benchmarks/encodings.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bgcache.errors import EventError
from bgcache.geometry import N_SENSORS, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent

_N_PIXELS = N_SENSORS * PIXELS_PER_SENSOR


@dataclass(frozen=True)
class PackedEvent:
    """One event as its slices of the block columns: what a reader decoded, not yet split.

    The basf2 module's filler takes these buffers as they are (its C++ loop does the running
    sum and the split); :meth:`unpack` makes the :class:`SparseEvent` (numpy).

    Attributes:
        index_delta: uint32, the first hit's packed pixel index, then the differences.
        charge: uint8, one per hit.

    Example:
        >>> packed = PackedEvent.from_event(SparseEvent([0, 1], [0, 0], [5, 0], [9, 3]))
        >>> packed.index_delta.tolist(), packed.n_hits, packed.unpack().sensor.tolist()
        ([5, 191995], 2, [0, 1])
    """

    index_delta: np.ndarray
    charge: np.ndarray

    @property
    def n_hits(self) -> int:
        """Number of fired pixels."""
        return int(self.charge.shape[0])

    def unpack(self) -> SparseEvent:
        """The event's hit columns (:func:`unpack_event`)."""
        return unpack_event(self.index_delta, self.charge)

    @classmethod
    def from_event(cls, event: SparseEvent) -> PackedEvent:
        """The columns a pool would store for ``event`` (uint8 charges, see :func:`pack_block`)."""
        block = pack_block([event])
        return cls(block.index_delta, block.charge)


#: An event as hit columns, or as its slices of the block columns.
AnyEvent = SparseEvent | PackedEvent


@dataclass(frozen=True)
class PackedBlock:
    """The columns of a block of events (see the module docstring)."""

    counts: np.ndarray
    index_delta: np.ndarray
    charge: np.ndarray

    def events(self) -> list[PackedEvent]:
        """Each event's slices of the columns (views, no copy)."""
        offsets = self.offsets.astype(np.int64).tolist()
        delta, charge = self.index_delta, self.charge
        return [PackedEvent(delta[a:b], charge[a:b]) for a, b in itertools.pairwise(offsets)]

    @property
    def n_events(self) -> int:
        """Events in the block."""
        return int(self.counts.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """Start of each event's hits, plus the total at the end (uint64, n + 1)."""
        out = np.zeros(self.n_events + 1, dtype=np.uint64)
        np.cumsum(self.counts, out=out[1:])
        return out


def pack_block(events: Sequence[SparseEvent]) -> PackedBlock:
    """Encode events into block columns.

    Raises:
        EventError: an event has charges that do not fit uint8 (merged events are not
            pool content).

    Example:
        >>> a = SparseEvent([0, 0], [0, 1], [5, 0], [9, 7])
        >>> b = SparseEvent([1], [0], [0], [3])
        >>> blk = pack_block([a, b])
        >>> blk.counts.tolist(), blk.index_delta.tolist(), blk.charge.tolist()
        ([2, 1], [5, 763, 192000], [9, 7, 3])
        >>> unpack_block(blk) == [a, b]
        True
    """
    counts = np.fromiter((ev.n_hits for ev in events), dtype=np.uint32, count=len(events))
    total = int(counts.sum(dtype=np.uint64))
    index = np.empty(total, dtype=np.uint32)
    charge = np.empty(total, dtype=np.uint8)
    pos = 0
    for ev in events:
        n = ev.n_hits
        if ev.charge.dtype != np.uint8 and n and int(ev.charge.max()) > 255:
            raise EventError("pool events hold uint8 charges; this event has charges above 255")
        index[pos : pos + n] = ev.pixel_index
        charge[pos : pos + n] = ev.charge
        pos += n
    delta = np.empty_like(index)
    if total:
        delta[0] = index[0]
        np.subtract(index[1:], index[:-1], out=delta[1:])
        starts = np.cumsum(counts[:-1], dtype=np.uint64)[counts[1:] > 0]
        delta[starts] = index[starts]
    return PackedBlock(counts, delta, charge)


def unpack_block(block: PackedBlock) -> list[SparseEvent]:
    """Decode all events of a block (inverse of :func:`pack_block`).

    Each event's running sum is taken on its own slice: cache-sized, and no block-wide
    temporaries (decoding a window of 16 events with block-wide arrays measured 5x slower).
    """
    return [event.unpack() for event in block.events()]


def unpack_event(index_delta: np.ndarray, charge: np.ndarray) -> SparseEvent:
    """Decode one event from its own slices of the block columns.

    The running sum is taken in uint32: exact for the indices of a sound event (all below
    40*250*768); a reader checks each event's sum of deltas before it hands one out.
    """
    index = np.cumsum(index_delta, dtype=np.uint32)
    return SparseEvent.from_pixel_index(index, charge, validate=False)


def check_block(block: PackedBlock) -> list[str]:
    """Consistency problems of a decoded block (empty when it is sound).

    Checks column lengths against the counts, that each event's pixel indices strictly
    increase and stay below 40*250*768, and that charges are > 0. Each problem names the
    event position within the block.

    Example:
        >>> blk = pack_block([SparseEvent([0], [0], [1], [4])])
        >>> check_block(blk)
        []
        >>> check_block(PackedBlock(blk.counts, blk.index_delta, np.zeros(1, np.uint8)))
        ['event 0: 1 hits with charge 0']
    """
    problems: list[str] = []
    total = int(block.counts.sum(dtype=np.uint64))
    for name, col in (("index_delta", block.index_delta), ("charge", block.charge)):
        if col.shape != (total,):
            problems.append(f"column {name} holds {col.shape[0]} values, counts say {total}")
    if problems:
        return problems
    offsets = block.offsets.astype(np.int64)
    for i in range(block.n_events):
        a, b = offsets[i], offsets[i + 1]
        if a == b:
            continue
        if b - a > 1 and not bool(np.all(block.index_delta[a + 1 : b] > 0)):
            problems.append(f"event {i}: pixel indices not strictly increasing")
        last = int(block.index_delta[a:b].sum(dtype=np.uint64))  # uint32 would wrap
        if last >= _N_PIXELS:
            problems.append(f"event {i}: pixel index {last} beyond the detector")
        zeros = int(np.count_nonzero(block.charge[a:b] == 0))
        if zeros:
            problems.append(f"event {i}: {zeros} hits with charge 0")
    return problems
