"""The catalog of a pool: which blocks are complete, in which order (numpy-free).

Below :mod:`bgcache.store.pool`: a scan lists the seed streams and their block groups once,
keeps a block only if its marker (its ``zarr.json``) exists, prefers the block with most
events for each block number, and records everything else as a :class:`Leftover`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgcache.errors import PoolFormatError
from bgcache.store.format import (
    PARTIAL_SUFFIX,
    STREAMS,
    ZARR_JSON,
    Layout,
    block_name,
    block_path,
    parse_block_name,
    seed_of_stream,
    stream_path,
)
from bgcache.store.storage import Storage


@dataclass(frozen=True)
class BlockInfo:
    """One complete block of a pool.

    Attributes:
        seed: the stream's seed.
        block: block number; it holds indices ``block*B .. block*B + n_events - 1``.
        n_events: events in the block.
        name: the block group's name (``"7"`` or ``"7~10"``).
        position: pool position of its first event.
        first_index: index of its first event.
    """

    seed: int
    block: int
    n_events: int
    name: str
    position: int
    first_index: int

    @property
    def stop_index(self) -> int:
        """One past the index of its last event."""
        return self.first_index + self.n_events

    @property
    def path(self) -> str:
        """Store key prefix of the block group."""
        return block_path(self.seed, self.name)


@dataclass
class Leftover:
    """Something in a pool's tree that is not data: an incomplete or superseded block, or a
    ``*.partial`` file of an interrupted write."""

    kind: str
    path: str
    detail: str = ""


@dataclass
class Catalog:
    """Complete blocks in position order, their first positions (plus the total at the end),
    the blocks by (seed, block number), the leftovers and the seeds."""

    blocks: list[BlockInfo] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    by_key: dict[tuple[int, int], BlockInfo] = field(default_factory=dict)
    leftovers: list[Leftover] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def merged_ranges(blocks: list[BlockInfo]) -> dict[int, list[tuple[int, int]]]:
    """Each seed's index ranges ``[start, stop)`` covered by ``blocks``, merged."""
    out: dict[int, list[tuple[int, int]]] = {}
    for info in blocks:
        ranges = out.setdefault(info.seed, [])
        if ranges and ranges[-1][1] == info.first_index:
            ranges[-1] = (ranges[-1][0], info.stop_index)
        else:
            ranges.append((info.first_index, info.stop_index))
    return out


@dataclass(frozen=True)
class LostBlock:
    """A block whose keys the root record's ``streams`` summary lists as complete but no
    complete block holds: its marker (or the whole block) was damaged or deleted.

    A summary is only ever written from a scan and complete blocks are never removed, so
    the summary of a sound pool lists a subset of its complete keys; compare a summary
    read *before* the scan (a writer may rewrite it meanwhile)."""

    seed: int
    block: int
    name: str
    first_index: int
    stop_index: int

    @property
    def path(self) -> str:
        """Store key prefix of the block group."""
        return block_path(self.seed, self.name)


#: Most lost blocks one range of a streams summary may reveal (2**18 blocks of 256 events is
#: 67 million events): more is damaged metadata, not a list to build block by block.
MAX_LOST_BLOCKS = 2**18


def _gaps(start: int, stop: int, have: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, stop)`` outside the merged, sorted ranges ``have``."""
    out, at = [], start
    for a, b in have:
        if b <= at:
            continue
        if a >= stop:
            break
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if at < stop:
        out.append((at, stop))
    return out


def _blocks(start: int, stop: int, block_events: int) -> range:
    """Numbers of the blocks that keys ``start..stop-1`` fall in, bounded."""
    blocks = range(start // block_events, -(-stop // block_events))
    if len(blocks) > MAX_LOST_BLOCKS:
        raise PoolFormatError(
            f"the root record's streams summary lists indices {start}..{stop - 1} that no "
            f"block holds, {len(blocks):,} blocks (more than {MAX_LOST_BLOCKS:,}): the root "
            "record is damaged"
        )
    return blocks


def lost_blocks(recorded: object, blocks: list[BlockInfo], layout: Layout) -> list[LostBlock]:
    """The blocks of keys that the summary ``recorded`` lists and ``blocks`` do not hold.

    Example:
        >>> from bgcache.store.format import Layout
        >>> held = [BlockInfo(0, 0, 8, "0", 0, 0), BlockInfo(0, 2, 4, "2~4", 8, 16)]
        >>> [b.name for b in lost_blocks([{"seed": 0, "ranges": [[0, 20]]}], held, Layout(8))]
        ['1']
    """
    if not isinstance(recorded, list):
        return []
    held = merged_ranges(blocks)
    B = layout.block_events
    out = []
    for entry in recorded:
        try:
            seed = int(entry["seed"])
            ranges = [(int(a), int(b)) for a, b in entry["ranges"]]
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        have = held.get(seed, [])
        for start, stop in ranges:
            if not 0 <= start <= stop < 2**63:
                raise PoolFormatError(
                    f"the root record's streams summary lists indices {start}..{stop} of seed "
                    f"{seed}, which no pool can hold (damaged metadata)"
                )
            lost = sorted({b for g0, g1 in _gaps(start, stop, have) for b in _blocks(g0, g1, B)})
            for block in lost:
                hi = min(stop, (block + 1) * B)
                n = hi - block * B
                out.append(LostBlock(seed, block, block_name(block, n, B), block * B, hi))
    return out


def scan_pool(storage: Storage, layout: Layout) -> Catalog:
    """List streams and blocks; keep, per block number, the complete block with most events."""
    cat = Catalog()
    seeds = []
    for name in storage.children(STREAMS):
        seed = seed_of_stream(name)
        if seed is None:
            if name.endswith(PARTIAL_SUFFIX):
                cat.leftovers.append(Leftover("partial file", f"{STREAMS}/{name}"))
            continue
        seeds.append(seed)
    seeds.sort()
    cat.seeds = seeds
    position = 0
    for seed in seeds:
        chosen: dict[int, tuple[int, str]] = {}
        prefix = stream_path(seed)
        for name in storage.children(prefix):
            parsed = parse_block_name(name)
            if parsed is None:
                if name.endswith(PARTIAL_SUFFIX):
                    cat.leftovers.append(Leftover("partial file", f"{prefix}/{name}"))
                continue
            block, short = parsed
            n = layout.block_events if short is None else short
            if n > layout.block_events:
                cat.leftovers.append(
                    Leftover("invalid block", f"{prefix}/{name}", f"{n} events > block size")
                )
                continue
            if not storage.exists(f"{prefix}/{name}/{ZARR_JSON}"):
                cat.leftovers.append(
                    Leftover(
                        "incomplete block",
                        f"{prefix}/{name}",
                        "no marker: an interrupted write; a build resumes it",
                    )
                )
                continue
            previous = chosen.get(block)
            if previous is None or previous[0] < n:
                if previous is not None:
                    cat.leftovers.append(
                        Leftover(
                            "superseded block", f"{prefix}/{previous[1]}", f"replaced by {name}"
                        )
                    )
                chosen[block] = (n, name)
            else:
                cat.leftovers.append(
                    Leftover("superseded block", f"{prefix}/{name}", f"replaced by {previous[1]}")
                )
        for block in sorted(chosen):
            n, name = chosen[block]
            info = BlockInfo(seed, block, n, name, position, block * layout.block_events)
            cat.blocks.append(info)
            cat.starts.append(position)
            cat.by_key[(seed, block)] = info
            position += n
    cat.starts.append(position)
    return cat


__all__ = [
    "BlockInfo",
    "Catalog",
    "Leftover",
    "LostBlock",
    "lost_blocks",
    "merged_ranges",
    "scan_pool",
]
