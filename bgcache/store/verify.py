"""``verify``: read a whole pool and check everything that can be checked.

The top layer of the store (it reads through :class:`~bgcache.store.pool.Pool`). Per
complete block: the marker parses and agrees with the block's name, stream and layout;
every column's Zarr metadata is present and agrees with the marker; stored sizes match
the marker; every chunk and shard index passes its crc32c; counts add up; within each
event the pixel indices strictly increase and stay on the detector; charges are > 0.
Per pool: the root record, the stream groups, and the root's ``streams`` summary
against the blocks: keys the summary lists that no complete block holds are *lost*
blocks (a marker or block damaged or deleted; a summary only ever lists complete blocks).

*Problems* are damage (exit code 1 in ``bgcache verify``); *warnings* are things that
are not data but not clean either: incomplete blocks and ``*.partial`` files of an
interrupted build (a build resumes them), superseded short blocks, a stale summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bgcache.errors import (
    BgcacheError,
    CorruptBlockError,
    PoolObjectError,
    PoolWriteError,
    StorageServerError,
)
from bgcache.store.catalog import lost_blocks
from bgcache.store.columns import PackedBlock, check_block
from bgcache.store.format import (
    COLUMN_DTYPES,
    PARTIAL_SUFFIX,
    STREAMS_DOCUMENT,
    ZARR_JSON,
    column_document_key,
    column_key,
    marker_key,
    stream_document_key,
)
from bgcache.store.pool import BlockInfo, Pool, open_pool
from bgcache.store.records import (
    MAX_DOCUMENT_BYTES,
    node_record,
    parse_block_marker,
    read_root_record,
    summary_of,
)
from bgcache.store.storage import PROBE_PREFIX


@dataclass
class Finding:
    """One problem or warning: what, where (store path) and which keys it affects."""

    kind: str
    path: str
    message: str
    seed: int | None = None
    first_index: int | None = None
    last_index: int | None = None

    def __str__(self) -> str:
        keys = (
            f" [seed {self.seed}, indices {self.first_index}..{self.last_index}]"
            if self.seed is not None
            else ""
        )
        return f"{self.kind}: {self.path}{keys}: {self.message}"


@dataclass
class VerifyReport:
    """The result of :func:`verify_pool`."""

    pool: str
    blocks: int = 0
    events: int = 0
    hits: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found (warnings allowed)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record."""
        out = asdict(self)
        out["ok"] = self.ok
        return out


def verify_pool(
    location: str | Pool, *, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Check every block of a pool; see the module docstring for what is checked.

    Args:
        location: the pool directory, or an open :class:`Pool`.
        progress: called as ``progress(blocks_done, blocks_total)``.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is False if any problem was found.

    Raises:
        PoolNotFoundError, NotAPoolError, PoolFormatError: the pool cannot be opened at all.

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", events=4)
        ...     report = verify_pool(tmp + "/p")
        ...     report.ok, report.events, report.problems
        (True, 4, [])
    """
    t0 = time.perf_counter()
    pool = location if isinstance(location, Pool) else open_pool(location)
    # the summary is read before the scan: a writer may add blocks (and list them) meanwhile
    recorded: dict[str, Any] | BgcacheError
    try:
        recorded = read_root_record(pool.storage)
    except (PoolWriteError, StorageServerError):
        raise  # the server's trouble, not the pool's
    except BgcacheError as exc:
        recorded = exc
    pool.refresh()
    report = VerifyReport(pool=pool.url)
    _check_groups(pool, report)
    blocks = pool.block_list
    for i, info in enumerate(blocks):
        _check_block(pool, info, report)
        if progress is not None:
            progress(i + 1, len(blocks))
    lost = (
        []
        if isinstance(recorded, BgcacheError)
        else lost_blocks(recorded.get("streams"), blocks, pool.layout)
    )
    for block in lost:
        report.problems.append(
            Finding(
                "lost",
                block.path,
                "the root record lists these keys as complete, but the block has no marker "
                "(damaged or deleted; a build rewrites it)",
                block.seed,
                block.first_index,
                block.stop_index - 1,
            )
        )
    lost_paths = {block.path for block in lost}
    for leftover in pool.leftovers:
        if leftover.path in lost_paths:
            continue
        report.warnings.append(Finding(leftover.kind, leftover.path, leftover.detail or "not data"))
    if not lost:
        _check_summary(pool, report, recorded)
    report.seconds = time.perf_counter() - t0
    return report


def _document(pool: Pool, key: str) -> bytes | None:
    """A metadata document, at most :data:`MAX_DOCUMENT_BYTES` (a larger one reads as
    ``b""``: damaged, as one that does not parse)."""
    try:
        return pool.storage.read(key, MAX_DOCUMENT_BYTES)
    except PoolObjectError:
        return b""


def _check_groups(pool: Pool, report: VerifyReport) -> None:
    storage = pool.storage
    streams = _document(pool, STREAMS_DOCUMENT)
    if streams == b"":
        report.problems.append(
            Finding("metadata", STREAMS_DOCUMENT, "streams group metadata is damaged")
        )
    if streams is None:
        if pool.block_list or pool.stream_seeds:
            report.problems.append(Finding("metadata", STREAMS_DOCUMENT, "missing"))
        else:  # a build killed between creating the root and the streams group
            report.warnings.append(
                Finding(
                    "incomplete pool",
                    STREAMS_DOCUMENT,
                    "missing: the pool's creation was interrupted; a build completes it",
                )
            )
    for seed in sorted({b.seed for b in pool.block_list}):
        key = stream_document_key(seed)
        raw = _document(pool, key)
        record = node_record(raw)
        if raw is None:
            report.problems.append(Finding("metadata", key, "stream group metadata is missing"))
        elif record is None or record.get("seed") != seed:
            report.problems.append(
                Finding("metadata", key, f"stream group metadata is damaged (expected seed {seed})")
            )
    for key, _size in storage.walk():
        name = key.rsplit("/", 1)[-1]
        if name.endswith(PARTIAL_SUFFIX) and not name.startswith(PROBE_PREFIX):
            report.warnings.append(
                Finding("partial file", key, "left by an interrupted write; not data")
            )


def _finding(kind: str, info: BlockInfo, message: str) -> Finding:
    return Finding(kind, info.path, message, info.seed, info.first_index, info.stop_index - 1)


def _check_block(pool: Pool, info: BlockInfo, report: VerifyReport) -> None:
    storage = pool.storage
    base = info.path
    raw = _document(pool, marker_key(base))
    try:
        marker = parse_block_marker(raw, base)
    except CorruptBlockError:
        report.problems.append(_finding("metadata", info, "block marker is damaged or unreadable"))
        return
    n_hits = int(marker["n_hits"])
    report.bytes_read += len(raw or b"")
    expected = {
        "seed": info.seed,
        "block": info.block,
        "first_index": info.first_index,
        "n_events": info.n_events,
    }
    for key, value in expected.items():
        if marker.get(key) != value:
            report.problems.append(
                _finding(
                    "metadata",
                    info,
                    f"marker says {key}={marker.get(key)!r}, the block's name and stream say {value!r}",
                )
            )
    shapes = {"counts": info.n_events, "index": n_hits, "charge": n_hits}
    for column, n in shapes.items():
        doc_raw = _document(pool, column_document_key(base, column))
        try:
            doc = json.loads(doc_raw or b"")
            shape_ok = doc["shape"] == [n] and doc["data_type"] == COLUMN_DTYPES[column].name
        except (ValueError, KeyError, TypeError):
            report.problems.append(
                _finding("metadata", info, f"column {column}: array metadata missing or damaged")
            )
            continue
        if not shape_ok:
            report.problems.append(
                _finding(
                    "metadata", info, f"column {column}: array metadata disagrees with the marker"
                )
            )
    nbytes = marker.get("nbytes", {})
    for column in ("counts", "index", "charge"):
        size = storage.size(column_key(base, column))
        stored = nbytes.get(column) if isinstance(nbytes, dict) else None
        if size is None:
            if shapes[column] > 0:
                report.problems.append(
                    _finding("missing", info, f"column {column}: chunk file missing")
                )
            continue
        if isinstance(stored, int):
            meta_size = storage.size(column_document_key(base, column)) or 0
            if size + meta_size != stored:
                report.problems.append(
                    _finding(
                        "size",
                        info,
                        f"column {column}: {size + meta_size} bytes stored, the marker recorded {stored} (truncated or replaced)",
                    )
                )
    try:
        _, counts = pool.block_marker(info)
    except CorruptBlockError as exc:
        report.problems.append(_finding("checksum", info, _short(exc, pool)))
        return
    report.bytes_read += storage.size(column_key(base, "counts")) or 0
    columns: dict[str, np.ndarray] = {}
    for column in ("index", "charge"):
        size = storage.size(column_key(base, column)) if n_hits else 0
        if size is None:
            continue  # reported above
        report.bytes_read += size
        try:
            columns[column] = pool.read_column(info, column, where=f"column {column}")
        except CorruptBlockError as exc:
            report.problems.append(_finding("checksum", info, str(exc)))
    if len(columns) < 2:
        return
    for message in check_block(PackedBlock(counts, columns["index"], columns["charge"])):
        report.problems.append(_finding("content", info, message))
    report.blocks += 1
    report.events += info.n_events
    report.hits += n_hits


def _short(exc: Exception, pool: Pool) -> str:
    """An error message without the pool and block prefix (the finding names them)."""
    text = str(exc)
    return (
        text.split("): ", 1)[1]
        if text.startswith(f"pool '{pool.url}' block") and "): " in text
        else text
    )


def _check_summary(
    pool: Pool, report: VerifyReport, recorded: dict[str, Any] | BgcacheError
) -> None:
    if isinstance(recorded, BgcacheError):
        report.problems.append(Finding("metadata", ZARR_JSON, str(recorded)))
        return
    actual = summary_of(pool.streams())
    if recorded.get("streams") != actual:
        report.warnings.append(
            Finding(
                "summary",
                ZARR_JSON,
                "the root record's streams summary differs from the complete blocks "
                "(a build is running or was interrupted); the next build refreshes it",
            )
        )


__all__ = ["Finding", "VerifyReport", "verify_pool"]
