"""Recompressing a pool: the same events under another codec, without generating anything.

The top of the store, beside :mod:`bgcache.store.verify`: it reads a source pool through
:class:`~bgcache.store.pool.Pool` (which never writes) and writes a target through
:class:`~bgcache.store.writer.PoolWriter`. Pools are built once and read by many jobs, so
the codec that suits building (zstd:1, the smallest) may not be the one that suits serving
(lz4, which decodes 4-5x faster): ``bgcache recompress SRC DST --codec lz4`` makes the
serving copy.

What the target holds:

* every complete block of the source, decoded (every checksum and the content checks of
  ``verify``) and encoded again block by block under the new codec, with the same name, so
  the same keys at the same positions; incomplete and superseded blocks are not data and
  are not copied;
* every stream group of the source, and the root record's ``streams`` summary rewritten
  from the target's own scan;
* the source's content record unchanged: event identity (model, checkpoint sha256,
  precision...) does not depend on the codec, so builds, imports and overlays treat the two
  pools as holding the same events;
* the layout's block size and chunk size unchanged, its ``compression`` the new codec;
* block markers with the source's ``n_events``, ``n_hits`` and ``generate_seconds``, this
  write's sizes, time and writer, and ``recompressed_from`` (the source codec and the
  source block's time, writer and software); the root record's ``hints`` add
  ``recompressed_from`` (the source's location, codec, creation time and software).

Resume is a build's: a block whose marker exists in the target is complete and skipped (its
``n_events`` and ``n_hits`` checked against the source's), so a killed recompress run again
finishes with the bytes an uninterrupted one writes. The source is never written, not even
on an error; a target that is the source, lies inside it (or holds it), or holds other
events or another codec is refused before anything is written.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bgcache.errors import CorruptBlockError, PoolMismatchError, UsageError
from bgcache.store.columns import check_block
from bgcache.store.format import Compression, Layout, parse_codec
from bgcache.store.pool import Pool, open_pool, open_storage
from bgcache.store.storage import LocalStorage, Storage
from bgcache.store.writer import check_build_location, create_or_open_pool

#: ``progress(done, total)`` in events (skipped blocks included in ``done``).
Progress = Callable[[int, int], None]

#: Marker fields of a source block that say what made its events (carried over as they are).
_CARRIED = ("generate_seconds",)
#: Longest text carried over from a source's record (a pool is untrusted input).
_MAX_TEXT = 200


@dataclass
class RecompressResult:
    """What a recompress did (times in seconds; ``source_bytes``: the stored bytes of the
    source blocks written, ``bytes_written`` what they took in the target)."""

    source: str
    target: str
    codec: str
    source_codec: str
    blocks_total: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    events_written: int = 0
    events_skipped: int = 0
    source_bytes: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    pool_events: int = 0

    @property
    def events_per_second(self) -> float | None:
        """Events written per second."""
        return (
            self.events_written / self.seconds if self.seconds > 0 and self.events_written else None
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record."""
        return {**asdict(self), "events_per_second": self.events_per_second}


def recompress_pool(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    codec: str | Compression,
    progress: Progress | None = None,
) -> RecompressResult:
    """Copy every complete block of ``source`` to ``target``, compressed with ``codec``.

    See the module docstring for what the target holds. Running it again after an
    interruption completes the target (complete blocks are skipped).

    Args:
        source: the pool to read (never written).
        target: the pool to write: a new location, or an unfinished recompress of the same
            source under the same codec.
        codec: ``zstd``, ``lz4`` or ``lz4hc``, optionally ``:LEVEL``
            (:func:`~bgcache.store.format.parse_codec`).
        progress: called as ``progress(done, total)`` in events.

    Returns:
        A :class:`RecompressResult`.

    Raises:
        UsageError: a bad codec, or ``target`` is ``source``, inside it or holds it.
        PoolMismatchError: ``target`` is a pool of other events, or of another codec or
            block size.
        CorruptBlockError: a block of the source is damaged, or lost (run
            ``bgcache verify`` on it); the target keeps the blocks written before.
        PoolNotFoundError, NotAPoolError, PoolFormatError, PoolWriteError: as for a build.

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", events=3, progress=None)
        ...     r = recompress_pool(tmp + "/p", tmp + "/p-lz4", codec="lz4")
        ...     r.codec, r.events_written, open_pool(tmp + "/p-lz4").event(2) == open_pool(tmp + "/p").event(2)
        ('lz4:9', 3, True)
    """
    t0 = time.perf_counter()
    compression = parse_codec(codec)
    src = open_pool(source)
    dst_storage = open_storage(target)
    _check_apart(src.storage, dst_storage)
    lost = src.lost_blocks()
    if lost:
        raise CorruptBlockError(
            f"pool '{src.url}': {len(lost)} blocks its root record lists as complete have no "
            f"marker (the first: {lost[0].path}): run 'bgcache verify {src.url}'; a copy "
            "would silently lack their events"
        )
    layout = Layout(src.layout.block_events, src.layout.chunk_hits, compression)
    existing = check_build_location(dst_storage)
    if existing is not None:
        _check_target(Pool(dst_storage, existing), src, layout)
    hints = dict(src.record.get("hints") or {})
    hints["recompressed_from"] = {
        "pool": _text(src.storage.absolute_url()),
        "codec": src.layout.compression.codec,
        "created": _text(src.record.get("created")),
        "software": _software(src.record.get("software")),
    }
    dst = create_or_open_pool(dst_storage, src.content, layout, hints=hints)
    result = RecompressResult(
        source=src.url,
        target=dst.url,
        codec=compression.codec,
        source_codec=src.layout.compression.codec,
    )
    blocks = src.block_list
    result.blocks_total = len(blocks)
    for seed in src.stream_seeds:
        dst.ensure_stream(seed)
    todo = []
    for info in blocks:
        have = dst.find(info.seed, info.first_index)
        if have is not None and have[0].n_events >= info.n_events:
            _check_copy(dst, have[0], info, src.block_marker(info)[0], dst.url)
            result.blocks_skipped += 1
            result.events_skipped += info.n_events
        else:
            todo.append(info)
    total = sum(info.n_events for info in blocks)
    done = result.events_skipped
    if progress is not None:
        progress(done, total)
    try:
        for info in todo:
            marker, _ = src.block_marker(info)
            packed = src.read_columns(info)
            problems = check_block(packed)
            if problems:
                raise CorruptBlockError(
                    f"pool '{src.url}' block {info.path}: {problems[0]}: run 'bgcache verify "
                    f"{src.url}'"
                )
            _, nbytes = dst.write_packed(
                info.seed, info.block, packed, extra=_marker_extra(marker, src)
            )
            result.blocks_written += 1
            result.events_written += info.n_events
            result.bytes_written += nbytes
            result.source_bytes += _stored(marker)
            done += info.n_events
            if progress is not None:
                progress(done, total)
    finally:
        dst.refresh_summary()
    result.pool_events = len(dst)
    result.seconds = time.perf_counter() - t0
    return result


def _check_apart(src: Storage, dst: Storage) -> None:
    """Refuse a target that is the source, lies inside it, or holds it."""
    if isinstance(src, LocalStorage) and isinstance(dst, LocalStorage):
        a, b = os.path.realpath(src.root), os.path.realpath(dst.root)
    else:
        a, b = src.absolute_url().rstrip("/"), dst.absolute_url().rstrip("/")
    if a == b:
        raise UsageError(
            f"the target '{dst.url}' is the source pool: recompress writes a copy, give "
            "another location as DST"
        )
    if b.startswith(a + "/") or a.startswith(b + "/"):
        inside = "inside the source" if b.startswith(a + "/") else "around the source"
        raise UsageError(
            f"the target '{dst.url}' lies {inside} '{src.url}': give a location apart from it"
        )


def _check_target(dst: Pool, src: Pool, layout: Layout) -> None:
    """An existing target must be an unfinished recompress of this source under this codec:
    the same content record and layout, and no block the source does not hold."""
    if dst.content != src.content:
        raise PoolMismatchError(
            f"pool '{dst.url}' holds other events than '{src.url}' (their content records "
            "differ): recompress into a new location"
        )
    if dst.layout != layout:
        have = dst.layout
        raise PoolMismatchError(
            f"pool '{dst.url}' holds these events under {have.compression.codec} (blocks of "
            f"{have.block_events}), not {layout.compression.codec} (blocks of "
            f"{layout.block_events}): recompress into a new location, or give --codec "
            f"{have.compression.codec} to complete it"
        )
    for info in dst.block_list:
        found = src.find(info.seed, info.first_index)
        if found is None or found[0].n_events < info.n_events:
            raise PoolMismatchError(
                f"pool '{dst.url}' holds block {info.path} (seed {info.seed}, indices "
                f"{info.first_index}..{info.stop_index - 1}), which '{src.url}' does not: it "
                "is not an unfinished copy of it; recompress into a new location"
            )


def _check_copy(dst: Pool, have: Any, info: Any, marker: Mapping[str, Any], url: str) -> None:
    """A complete target block must hold the source block's events (counts and hits)."""
    held, _ = dst.block_marker(have)
    if have.n_events != info.n_events or held.get("n_hits") != marker.get("n_hits"):
        raise PoolMismatchError(
            f"pool '{url}' block {have.path} holds {have.n_events} events with "
            f"{held.get('n_hits')} hits, the source's {info.n_events} with "
            f"{marker.get('n_hits')}: it is not a copy of this source; recompress into a new "
            "location"
        )


def _marker_extra(marker: Mapping[str, Any], src: Pool) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key in _CARRIED:
        value = marker.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            extra[key] = value
    extra["recompressed_from"] = {
        "codec": src.layout.compression.codec,
        "written": _text(marker.get("written")),
        "writer": _text(marker.get("writer")),
        "software": _software(marker.get("software")),
    }
    return extra


def _text(value: object) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None


def _software(value: object) -> dict[str, str | None]:
    if not isinstance(value, dict):
        return {}
    return {str(k)[:40]: _text(v) for k, v in list(value.items())[:16]}


def _stored(marker: Mapping[str, Any]) -> int:
    nbytes = marker.get("nbytes")
    if not isinstance(nbytes, dict):
        return 0
    return sum(v for v in nbytes.values() if isinstance(v, int) and not isinstance(v, bool))


__all__ = ["Progress", "RecompressResult", "recompress_pool"]
