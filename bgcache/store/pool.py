"""Pools: open one and read its events (writing is :mod:`bgcache.store.writer`'s).

The middle layer of the store: :mod:`bgcache.store.format` fixes names and documents,
:mod:`bgcache.store.shards` the chunk bytes, :mod:`bgcache.store.storage` where bytes
live; this module turns them into :class:`Pool`, the reader. Reading needs numpy,
numcodecs, google-crc32c and nothing else — never torch.

Catalog: opening a pool lists its streams and their blocks once (one directory listing
per stream plus one existence check per block). A block counts only when its marker
(the block group's ``zarr.json``) exists; the marker is written after every column is
durably in place, so readers never see a partial block. Given the catalog, one event is
found with O(1) metadata reads: its block marker and counts (both cached), the shard
index of each hit column and the chunks the event spans.

Positions: the complete events of a pool in order of ascending seed, then index. They
are stable while the pool's content is; an event's key (seed, index) is its identity.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bgcache.errors import (
    CorruptBlockError,
    EventNotFoundError,
    PoolObjectError,
    PositionError,
    UsageError,
)
from bgcache.geometry import DENSE_EVENT_BYTES, N_SENSORS, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.seeding import EventKey, validate_index, validate_seed
from bgcache.store.catalog import (
    BlockInfo,
    Leftover,
    LostBlock,
    lost_blocks,
    merged_ranges,
    scan_pool,
)
from bgcache.store.columns import PackedBlock, unpack_block
from bgcache.store.format import (
    COLUMN_DTYPES,
    STREAMS,
    Layout,
    column_key,
    marker_key,
)
from bgcache.store.records import (
    IMPORTED_MODEL,
    MAX_DOCUMENT_BYTES,
    parse_block_marker,
    read_root_record,
    summary_of,
)
from bgcache.store.shards import (
    chunk_nbytes_bound,
    decode_chunk,
    decode_shard,
    read_shard_index,
    read_shard_range,
    shard_nbytes_bound,
)
from bgcache.store.storage import LocalStorage, Storage

#: Blocks whose marker and counts a reader keeps in memory.
_CACHE_BLOCKS = 64
#: Pixels of the detector: every packed pixel index is below it.
_N_PIXELS = N_SENSORS * PIXELS_PER_SENSOR


class Pool:
    """A pool of pre-generated background events (use :func:`open_pool`).

    ``len(pool)`` is the number of complete events; ``pool[i]`` or ``pool.event(i)`` is the
    event at position ``i``; ``pool.event_by_key(seed, index)`` finds one by its key;
    ``pool.blocks()`` yields ``(BlockInfo, events)`` a block at a time for sequential
    consumers. A pool object sees the blocks that were complete when it was opened or last
    :meth:`refresh`-ed.
    """

    def __init__(self, storage: Storage, record: dict[str, Any]) -> None:
        self.storage = storage
        self.record = record
        self.layout = Layout.from_dict(record["layout"])
        self._markers: OrderedDict[str, tuple[dict[str, Any], np.ndarray]] = OrderedDict()
        self._indexes: OrderedDict[str, np.ndarray] = OrderedDict()
        self._catalog = scan_pool(storage, self.layout)

    # -- description ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The pool's location."""
        return self.storage.url

    @property
    def content(self) -> dict[str, Any]:
        """What the events are: model, architecture, checkpoint sha256, precision..."""
        return dict(self.record["content"])

    @property
    def model(self) -> str:
        """Name of the generator that made the events."""
        return str(self.record["content"]["model"])

    @property
    def imported(self) -> bool:
        """True if the events were imported from ROOT files (``bgcache import``), not generated."""
        return bool(self.record["content"].get("model") == IMPORTED_MODEL)

    @property
    def untrained(self) -> bool:
        """True if the events come from an untrained demo checkpoint."""
        return bool(self.record["content"].get("untrained", False))

    @property
    def physics_model(self) -> bool:
        """False for generators that are not a physics model (synthetic, untrained)."""
        return bool(self.record["content"].get("physics_model", True)) and not self.untrained

    @property
    def n_events(self) -> int:
        """Complete events."""
        cat = self._catalog
        return cat.starts[-1] if cat.starts else 0

    def __len__(self) -> int:
        return self.n_events

    @property
    def block_list(self) -> list[BlockInfo]:
        """Complete blocks in position order."""
        return list(self._catalog.blocks)

    @property
    def stream_seeds(self) -> list[int]:
        """Seeds that have a stream group, with or without complete blocks, ascending."""
        return list(self._catalog.seeds)

    @property
    def leftovers(self) -> list[Leftover]:
        """Incomplete and superseded blocks and ``*.partial`` files seen at the last scan."""
        return list(self._catalog.leftovers)

    def streams(self) -> dict[int, list[tuple[int, int]]]:
        """Each seed's complete index ranges ``[start, stop)``, merged, in ascending seed order.

        Example:
            >>> import tempfile
            >>> from bgcache.build import build_pool
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     _ = build_pool(tmp + "/p", model="synthetic", seed=3, events=5, progress=None)
            ...     open_pool(tmp + "/p").streams()
            {3: [(0, 5)]}
        """
        return merged_ranges(self._catalog.blocks)

    def refresh(self) -> None:
        """Scan the store again (to see blocks completed by other writers since opening)."""
        self._catalog = scan_pool(self.storage, self.layout)

    def lost_blocks(self) -> list[LostBlock]:
        """Blocks that the root record's ``streams`` summary lists as complete but that have
        no marker: damaged or deleted, not an interrupted write (a summary only ever lists
        blocks that were complete, and complete blocks stay). Readers cannot see them; this
        compares the summary with the catalog (scanning again before it reports any)."""
        found = lost_blocks(self.record.get("streams"), self._catalog.blocks, self.layout)
        if found:  # the record may be newer than the scan (refresh_summary): scan again
            self.refresh()
            found = lost_blocks(self.record.get("streams"), self._catalog.blocks, self.layout)
        return found

    # -- reading ----------------------------------------------------------------------------
    def block_of(self, position: int) -> BlockInfo:
        """The block holding pool position ``position``.

        Raises:
            PositionError: the position is not in ``0 .. len(pool) - 1``.
        """
        n = self.n_events
        if isinstance(position, bool) or not isinstance(position, int | np.integer):
            raise PositionError(f"pool position must be an integer, got {position!r}")
        position = int(position)
        if position < 0:
            position += n
        if not 0 <= position < n:
            raise PositionError(
                f"position {position} is out of range: the pool holds {n} events (0..{n - 1})"
            )
        i = bisect.bisect_right(self._catalog.starts, position) - 1
        return self._catalog.blocks[i]

    def spans(self, start: int, stop: int) -> Iterator[tuple[BlockInfo, range]]:
        """Each block overlapping the positions ``[start, stop)``, with the offsets inside
        it that fall in the range, in position order."""
        blocks = self._catalog.blocks
        if stop <= start or not blocks:
            return
        i = max(bisect.bisect_right(self._catalog.starts, start) - 1, 0)
        while i < len(blocks) and blocks[i].position < stop:
            info = blocks[i]
            lo = max(start, info.position) - info.position
            hi = min(stop, info.position + info.n_events) - info.position
            if hi > lo:
                yield info, range(lo, hi)
            i += 1

    def key(self, position: int) -> EventKey:
        """The key (seed, index) of the event at ``position``."""
        info = self.block_of(position)
        pos = int(position) if int(position) >= 0 else int(position) + self.n_events
        return EventKey(info.seed, info.first_index + pos - info.position)

    def find(self, seed: int, index: int) -> tuple[BlockInfo, int] | None:
        """The block holding key (seed, index) and the event's offset in it, or None."""
        seed, index = validate_seed(seed), validate_index(index)
        info = self._catalog.by_key.get((seed, index // self.layout.block_events))
        if info is None or index >= info.stop_index:
            return None
        return info, index - info.first_index

    def position(self, seed: int, index: int) -> int:
        """The pool position of key (seed, index).

        Raises:
            EventNotFoundError: the key is not in the pool.
        """
        found = self.find(seed, index)
        if found is None:
            raise EventNotFoundError(self._missing_key(seed, index))
        return found[0].position + found[1]

    def _missing_key(self, seed: int, index: int) -> str:
        ranges = self.streams().get(seed)
        held = (
            f"stream {seed} holds {', '.join(f'{a}..{b - 1}' for a, b in ranges)}"
            if ranges
            else f"the pool has no stream with seed {seed} (seeds: {', '.join(map(str, self.streams())) or 'none'})"
        )
        return f"event (seed {seed}, index {index}) is not in pool '{self.url}': {held}"

    def event(self, position: int) -> SparseEvent:
        """The event at pool position ``position`` (negative counts from the end)."""
        info = self.block_of(position)
        pos = int(position) if int(position) >= 0 else int(position) + self.n_events
        return self._read_event(info, pos - info.position)

    def __getitem__(self, position: int) -> SparseEvent:
        return self.event(position)

    def event_by_key(self, seed: int, index: int) -> SparseEvent:
        """The event with key (seed, index).

        Raises:
            EventNotFoundError: the key is not in the pool (the message says what is).
        """
        found = self.find(seed, index)
        if found is None:
            raise EventNotFoundError(self._missing_key(seed, index))
        return self._read_event(*found)

    def block_marker(self, info: BlockInfo) -> tuple[dict[str, Any], np.ndarray]:
        """The block's marker record and its counts column, checked against each other
        (cached for the most recently used blocks).

        Raises:
            CorruptBlockError: the marker or the counts are missing, damaged or disagree.
        """
        cached = self._markers.get(info.path)
        if cached is not None:
            self._markers.move_to_end(info.path)
            return cached
        where = self._where(info)
        marker_raw = self._block_bytes(marker_key(info.path), MAX_DOCUMENT_BYTES, where)
        record = parse_block_marker(marker_raw, where, info.n_events)
        n_hits = int(record["n_hits"])
        # the counts chunk holds the block's n_events values: decode into a buffer of that
        # size, so a frame that declares more (a decompression bomb) is refused unopened
        counts = np.empty(info.n_events, COLUMN_DTYPES["counts"])
        counts_raw = self._block_bytes(
            column_key(info.path, "counts"), chunk_nbytes_bound(counts), where
        )
        if counts_raw is None:
            raise CorruptBlockError(f"{where}: column counts is missing")
        decode_chunk(counts_raw, counts.dtype, f"{where} counts", out=counts)
        if counts.shape[0] != info.n_events or int(counts.sum(dtype=np.uint64)) != n_hits:
            raise CorruptBlockError(f"{where}: counts do not add up to the marker's {n_hits} hits")
        self._markers[info.path] = (record, counts)
        if len(self._markers) > _CACHE_BLOCKS:
            self._markers.popitem(last=False)
        return record, counts

    def _shard_index(self, info: BlockInfo, column: str, n_hits: int) -> np.ndarray:
        """The parsed shard index of a block's column (cached, like the markers)."""
        key = column_key(info.path, column)
        cached = self._indexes.get(key)
        if cached is not None:
            self._indexes.move_to_end(key)
            return cached

        def read(off: int, length: int) -> bytes:
            return self.storage.read_range(key, off, length)

        index = read_shard_index(
            read, n_hits, self.layout.chunk_hits, f"{self._where(info)} column {column}"
        )
        self._indexes[key] = index
        if len(self._indexes) > 2 * _CACHE_BLOCKS:
            self._indexes.popitem(last=False)
        return index

    def _block_bytes(self, key: str, max_bytes: int, where: str) -> bytes | None:
        """A block's object, at most ``max_bytes``; one that is a link, not a regular file,
        unreadable or larger is damage to the block (``on_corrupt`` treats it so)."""
        try:
            return self.storage.read(key, max_bytes)
        except PoolObjectError as exc:
            raise CorruptBlockError(f"{where}: {exc}") from None

    def _where(self, info: BlockInfo) -> str:
        return (
            f"pool '{self.url}' block {info.path} (seed {info.seed}, "
            f"indices {info.first_index}..{info.stop_index - 1})"
        )

    def _read_event(self, info: BlockInfo, offset: int) -> SparseEvent:
        return self.read_events(info, offset, offset + 1)[0]

    def read_column(self, info: BlockInfo, column: str, where: str | None = None) -> np.ndarray:
        """The decoded hit column ``index`` or ``charge`` of a whole block, every chunk's
        checksum checked.

        Args:
            where: how errors name the column (default: the pool, the block and the column).

        Raises:
            CorruptBlockError: the marker, the counts or the column is missing or damaged.
        """
        record, _ = self.block_marker(info)
        n_hits = int(record["n_hits"])
        if n_hits == 0:
            return np.zeros(0, COLUMN_DTYPES[column])
        where = where or f"{self._where(info)} column {column}"
        dtype = np.dtype(COLUMN_DTYPES[column])
        bound = shard_nbytes_bound(n_hits, self.layout.chunk_hits, dtype)
        raw = self._block_bytes(column_key(info.path, column), bound, where)
        if raw is None:
            raise CorruptBlockError(f"{where}: its shard is missing")
        return decode_shard(raw, n_hits, self.layout.chunk_hits, COLUMN_DTYPES[column], where)

    def read_columns(self, info: BlockInfo) -> PackedBlock:
        """The decoded columns of a whole block (every chunk's checksum checked)."""
        _, counts = self.block_marker(info)
        return PackedBlock(
            counts, self.read_column(info, "index"), self.read_column(info, "charge")
        )

    def read_block(self, info: BlockInfo) -> list[SparseEvent]:
        """All events of one block, in index order."""
        columns = self.read_columns(info)
        _check_columns(columns, self._where(info))
        return unpack_block(columns)

    def read_window(self, info: BlockInfo, start: int, stop: int) -> PackedBlock:
        """The decoded columns of events ``start .. stop - 1`` (offsets in the block) of one
        block, checked as every event a reader hands out is: each event's pixel indices
        strictly increase and stay on the detector, and its charges are > 0.

        Reads only the inner chunks they span: memory stays proportional to ``stop - start``
        (a whole block of 256 events decodes to ~90 MB of columns; the overlay reads windows
        of a few events). :meth:`read_events` splits them into hit columns; the basf2
        module's filler takes them as they are (:meth:`PackedBlock.events`).

        Raises:
            CorruptBlockError: the marker, the counts or a column is missing or damaged.
        """
        if not 0 <= start <= stop <= info.n_events:
            raise UsageError(
                f"offsets {start}..{stop} are outside block {info.path} of {info.n_events} events"
            )
        record, counts = self.block_marker(info)
        n_hits = int(record["n_hits"])
        first = int(counts[:start].sum(dtype=np.uint64))
        last = first + int(counts[start:stop].sum(dtype=np.uint64))
        where = self._where(info)
        cols = {}
        for column in ("index", "charge"):
            key = column_key(info.path, column)

            def read(off: int, length: int, key: str = key) -> bytes:
                return self.storage.read_range(key, off, length)

            cols[column] = read_shard_range(
                read,
                n_hits,
                self.layout.chunk_hits,
                COLUMN_DTYPES[column],
                first,
                last,
                f"{where} column {column}",
                index=self._shard_index(info, column, n_hits) if last > first else None,
            )
        columns = PackedBlock(counts[start:stop], cols["index"], cols["charge"])
        _check_columns(columns, where, start)
        return columns

    def read_events(self, info: BlockInfo, start: int, stop: int) -> list[SparseEvent]:
        """Events ``start .. stop - 1`` (offsets in the block) of one block
        (:meth:`read_window`, split into hit columns)."""
        return unpack_block(self.read_window(info, start, stop))

    def blocks(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[BlockInfo, list[SparseEvent]]]:
        """``(BlockInfo, events)`` for each complete block, in position order.

        Args:
            start, stop: range of block numbers in :attr:`block_list` order.
        """
        for info in self._catalog.blocks[start:stop]:
            yield info, self.read_block(info)

    def sample(self, n: int | None) -> Iterator[tuple[int, SparseEvent]]:
        """``(position, event)`` for ``n`` positions spread evenly over the pool (all if None
        or ``n >= len(pool)``; then read a block at a time)."""
        total = self.n_events
        if n is None or n >= total:
            position = 0
            for _, events in self.blocks():
                for event in events:
                    yield position, event
                    position += 1
            return
        for position in np.unique(np.linspace(0, total - 1, max(n, 1)).astype(np.int64)).tolist():
            yield position, self.event(position)

    def __iter__(self) -> Iterator[SparseEvent]:
        for _, events in self.blocks():
            yield from events

    # -- description for inspect -------------------------------------------------------------
    def stored_bytes(self) -> dict[str, int]:
        """Bytes on disk: all objects, data of complete blocks, and leftovers."""
        total = data = 0
        complete = {info.path for info in self._catalog.blocks}
        for key, size in self.storage.walk():
            total += size
            parts = key.split("/")
            if len(parts) > 3 and parts[0] == STREAMS and "/".join(parts[:3]) in complete:
                data += size
        return {"total": total, "complete_blocks": data, "other": total - data}

    def describe(self) -> dict[str, Any]:
        """What ``bgcache inspect`` shows, as a JSON-serialisable dict.

        Reads every block marker (one small read per block) and walks the tree for sizes;
        a damaged marker is counted, not raised, so a damaged pool can still be described.
        """
        hits = 0
        unreadable = 0
        blocks_per_seed: dict[int, int] = {}
        for info in self._catalog.blocks:
            blocks_per_seed[info.seed] = blocks_per_seed.get(info.seed, 0) + 1
            try:
                raw = self._block_bytes(marker_key(info.path), MAX_DOCUMENT_BYTES, info.path)
                marker = parse_block_marker(raw, info.path, info.n_events)
            except CorruptBlockError:
                unreadable += 1
            else:
                hits += int(marker["n_hits"])
        sizes = self.stored_bytes()
        n = self.n_events
        per_event = sizes["complete_blocks"] / n if n else None
        content = self.content
        streams = [
            {**entry, "blocks": blocks_per_seed.get(entry["seed"], 0)}
            for entry in summary_of(self.streams())
        ]
        return {
            "pool": self.url,
            "format": self.record["format"],
            "format_version": self.record["format_version"],
            "model": self.model,
            "untrained": self.untrained,
            "imported": self.imported,
            "physics_model": self.physics_model,
            "note": content.get("note"),
            "checkpoint_sha256": content.get("checkpoint_sha256"),
            "checkpoint_path_hint": self.record.get("hints", {}).get("checkpoint_path"),
            "content": content,
            "created": self.record.get("created"),
            "software": self.record.get("software", {}),
            "layout": self.record["layout"],
            "codec": self.layout.compression.codec,
            "events": n,
            "blocks": len(self._catalog.blocks),
            "hits": hits,
            "unreadable_markers": unreadable,
            "mean_hits_per_event": hits / n if n else None,
            "streams": streams,
            "bytes": sizes,
            "bytes_per_event": per_event,
            "bits_per_hit": 8 * sizes["complete_blocks"] / hits if hits else None,
            "dense_bytes_per_event": DENSE_EVENT_BYTES,
            "compression_ratio": DENSE_EVENT_BYTES / per_event if per_event else None,
            "leftovers": [vars(x) for x in self._catalog.leftovers],
        }

    def __repr__(self) -> str:
        flag = ", UNTRAINED" if self.untrained else ""
        return f"<Pool {self.url!r}: {self.n_events} events of {self.model}{flag}, {len(self._catalog.blocks)} blocks>"


def _check_columns(block: PackedBlock, where: str, first: int = 0) -> None:
    """Cheap content checks of decoded columns, so that a reader never hands out an event
    that breaks the format's invariants even if its checksums hold (a writer bug or a
    hostile pool): indices strictly increasing within each event (no delta 0 but at an
    event's start), on the detector (each event's sum of deltas, taken in uint64, below
    40*250*768: then no uint32 running sum wraps either), and charges > 0. ``first`` is the
    offset in its block of the window's first event (for the message). About 0.03 ms an
    event of 69,000 hits; the check it replaced, of each event's last value after a uint32
    running sum, let a wrapped event through."""
    offsets = block.offsets.astype(np.int64)
    zeros = np.flatnonzero(block.index_delta == 0)
    if zeros.size and not bool(np.isin(zeros, offsets[:-1]).all()):
        raise CorruptBlockError(f"{where}: an event has unsorted or repeated pixels")
    if block.charge.size and int(block.charge.min()) == 0:
        raise CorruptBlockError(f"{where}: an event has hits with charge 0")
    nonempty = np.flatnonzero(block.counts)
    if nonempty.size:
        sums = np.add.reduceat(block.index_delta, offsets[nonempty], dtype=np.uint64)
        beyond = np.flatnonzero(sums >= _N_PIXELS)
        if beyond.size:
            offset = first + int(nonempty[beyond[0]])
            raise CorruptBlockError(f"{where}: event {offset} has pixels beyond the detector")


# -- opening and creating ----------------------------------------------------------------


def open_storage(location: str | os.PathLike[str] | Storage) -> Storage:
    """The storage backend of a pool location: a local path (or ``file://`` URL), an
    ``s3://bucket/prefix`` URL (S3 or an S3-compatible server, see :mod:`bgcache.store.s3`),
    a ``root://host//path`` URL (XRootD, :mod:`bgcache.store.xrootd`) or a
    ``davs://host/path`` / ``https://`` URL (WebDAV, :mod:`bgcache.store.webdav`).

    Raises:
        UsageError: a URL scheme bgcache cannot store pools at.
    """
    if not isinstance(location, str | os.PathLike):
        return location
    text = os.fspath(location)
    if not text.strip():
        raise UsageError("pool location is empty: give a directory or s3://bucket/prefix")
    if text.startswith("s3://"):
        from bgcache.store.s3 import S3Storage

        return S3Storage(text)
    if text.startswith(("root://", "roots://")):
        from bgcache.store.xrootd import XRootDStorage

        return XRootDStorage(text)
    if text.startswith(("davs://", "dav://", "https://", "http://")):
        from bgcache.store.webdav import WebDAVStorage

        return WebDAVStorage(text)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise UsageError(
            f"pool location {text!r}: {scheme}:// is not supported; use a local path, "
            "s3://bucket/prefix, root://host//path or davs://host/path"
        )
    path = text.removeprefix("file://")
    if not path.strip():
        raise UsageError(f"pool location {text!r} names no path: give file:///path/to/pool")
    return LocalStorage(_local_path(path))


def _local_path(text: str) -> Path:
    """A local pool path, expanded and checked against the file system's name limits."""
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        user = text.split("/", 1)[0]
        raise UsageError(f"pool location {text!r}: no user {user[1:]!r} to expand {user}") from None
    name_max, path_max = 255, 4096
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name_max = os.pathconf("/", "PC_NAME_MAX")
        path_max = os.pathconf("/", "PC_PATH_MAX")
    long = next((p for p in path.parts if len(os.fsencode(p)) > name_max), None)
    if long is not None:
        raise UsageError(
            f"pool location: the component {long[:40]!r}... has {len(os.fsencode(long))} bytes, "
            f"more than the {name_max} a file name can have: choose a shorter name"
        )
    if len(os.fsencode(path.absolute())) >= path_max:
        raise UsageError(
            f"pool location {str(path)[:60]!r}... is longer than the {path_max} bytes a path "
            "can have: choose a shorter path"
        )
    return path


def open_pool(location: str | os.PathLike[str]) -> Pool:
    """Open a pool for reading.

    Args:
        location: the pool directory (a local path or ``file://`` URL).

    Raises:
        PoolNotFoundError: nothing at ``location``.
        NotAPoolError: a file, or a directory that is not a bgcache pool.
        PoolFormatError: damaged metadata, or a newer format version.

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", seed=1, events=3, progress=None)
        ...     pool = open_pool(tmp + "/p")
        ...     len(pool), pool.key(2), pool.event(2) == pool.event_by_key(1, 2)
        (3, EventKey(seed=1, index=2), True)
    """
    storage = open_storage(location)
    return Pool(storage, read_root_record(storage))


__all__ = [
    "BlockInfo",
    "Leftover",
    "LostBlock",
    "Pool",
    "open_pool",
    "open_storage",
]
