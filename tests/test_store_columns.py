"""Block column encoding: round trips, random access, and the consistency checker."""

from __future__ import annotations

import numpy as np
import pytest

from bgcache.errors import EventError
from bgcache.hits import SparseEvent
from bgcache.models import load_model
from bgcache.store.columns import PackedBlock, check_block, pack_block, unpack_block, unpack_event

LAST = 40 * 250 * 768 - 1


@pytest.fixture(scope="module")
def synthetic_events() -> list[SparseEvent]:
    return load_model("synthetic").events([(3, i) for i in range(6)])


def _edge_events() -> list[SparseEvent]:
    return [
        SparseEvent.empty(),
        SparseEvent([39], [249], [767], [255]),
        SparseEvent.empty(),
        SparseEvent([0, 0, 39], [0, 0, 249], [0, 1, 767], [1, 2, 3]),
        SparseEvent.empty(),
    ]


@pytest.mark.parametrize("which", ["synthetic", "edges", "mixed", "none"])
def test_round_trip(which: str, synthetic_events: list[SparseEvent]) -> None:
    events = {
        "synthetic": synthetic_events,
        "edges": _edge_events(),
        "mixed": _edge_events()[:2] + synthetic_events[:2] + _edge_events()[2:],
        "none": [],
    }[which]
    block = pack_block(events)
    assert block.counts.dtype == np.uint32 and block.index_delta.dtype == np.uint32
    assert block.charge.dtype == np.uint8
    assert block.n_events == len(events)
    assert unpack_block(block) == events
    assert check_block(block) == []


def test_each_event_decodes_from_its_own_slice(synthetic_events: list[SparseEvent]) -> None:
    events = _edge_events() + synthetic_events
    block = pack_block(events)
    off = block.offsets.astype(np.int64)
    for i, ev in enumerate(events):
        a, b = off[i], off[i + 1]
        assert unpack_event(block.index_delta[a:b], block.charge[a:b]) == ev


def test_running_sums_beyond_32_bits() -> None:
    events = [SparseEvent([39], [249], [767 - (i % 5)], [7]) for i in range(600)]
    block = pack_block(events)
    assert int(block.index_delta.astype(np.uint64).sum()) > 2**32
    assert unpack_block(block) == events


def test_delta_coding_restarts_per_event() -> None:
    block = pack_block(
        [SparseEvent([0, 0], [0, 0], [3, 10], [5, 6]), SparseEvent([0], [0], [4], [1])]
    )
    assert block.index_delta.tolist() == [3, 7, 4]


def test_wide_charges_are_refused_but_small_uint16_accepted() -> None:
    with pytest.raises(EventError, match="above 255"):
        pack_block([SparseEvent([0], [0], [0], np.array([256], np.uint16))])
    ok = pack_block([SparseEvent([0], [0], [0], np.array([200], np.uint16))])
    assert ok.charge.tolist() == [200]


def _damaged(block: PackedBlock, **cols: np.ndarray) -> PackedBlock:
    return PackedBlock(
        cols.get("counts", block.counts),
        cols.get("index_delta", block.index_delta),
        cols.get("charge", block.charge),
    )


def test_check_block_names_each_problem(synthetic_events: list[SparseEvent]) -> None:
    block = pack_block(synthetic_events[:3])
    off = block.offsets.astype(np.int64)
    delta = block.index_delta.copy()
    delta[off[1] + 5] = 0  # a repeated pixel in event 1
    assert check_block(_damaged(block, index_delta=delta)) == [
        "event 1: pixel indices not strictly increasing"
    ]
    delta = block.index_delta.copy()
    delta[off[3] - 1] += LAST  # event 2 runs off the detector
    (problem,) = check_block(_damaged(block, index_delta=delta))
    assert problem.startswith("event 2: pixel index") and "beyond the detector" in problem
    charge = block.charge.copy()
    charge[off[0] : off[0] + 3] = 0
    assert check_block(_damaged(block, charge=charge)) == ["event 0: 3 hits with charge 0"]
    short = _damaged(block, charge=block.charge[:-1])
    assert check_block(short) == [f"column charge holds {off[3] - 1} values, counts say {off[3]}"]
