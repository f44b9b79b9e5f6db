"""Writing pools: create one, write blocks of events, keep the root record's summary.

Above :mod:`bgcache.store.pool` (a :class:`PoolWriter` is a :class:`~bgcache.store.pool.Pool`
that also writes; reading never needs this module). The crash-safety and multi-writer
rules of ``docs/format.md`` are kept here:

* a block's columns are written first, each atomically (the storage's ``write``: a
  ``*.partial`` file renamed over the key on a file system, one PUT on S3) and durably
  (locally: fsync of the file and of every directory that got an entry), and its marker
  last: until the marker exists readers do not see the block, and
  a killed writer leaves only an incomplete block that a resume rewrites with the same
  bytes;
* groups (the root, the streams group, a stream) are created with ``write_new``
  (create-if-absent), so concurrent writers agree on one document without a lock server;
* every writer rewrites the root record's ``streams`` summary when it finishes
  (:meth:`PoolWriter.refresh_summary`), scanning again until its summary is current.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from bgcache.errors import NotAPoolError, PoolMismatchError, UsageError
from bgcache.hits import SparseEvent
from bgcache.store.columns import PackedBlock, pack_block
from bgcache.store.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    STREAMS,
    STREAMS_DOCUMENT,
    ZARR_JSON,
    Layout,
    array_document,
    block_name,
    block_path,
    column_document_key,
    column_key,
    marker_key,
    stream_document_key,
    stream_path,
)
from bgcache.store.pool import Pool, open_storage
from bgcache.store.records import (
    IMPORTED_MODEL,
    MAX_DOCUMENT_BYTES,
    content_differences,
    json_bytes,
    node_document,
    now,
    read_root_record,
    software_versions,
    summary_of,
)
from bgcache.store.shards import encode_chunk, encode_shard
from bgcache.store.storage import Storage


class PoolWriter(Pool):
    """A pool opened for writing (:func:`create_or_open_pool`): reads as a
    :class:`~bgcache.store.pool.Pool` does, and writes blocks and streams."""

    def write_block(
        self,
        seed: int,
        block: int,
        events: Sequence[SparseEvent],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """Write one block of events and mark it complete; returns (its name, bytes written).

        The columns are written first (each atomically and fsynced), the marker last: until
        the marker exists, readers do not see the block; a crash leaves an incomplete block
        that :func:`bgcache.build.build_pool` rewrites on resume. Writing a block that
        exists replaces it with the same bytes (the events of a key never change).

        Args:
            seed: the stream's seed; block: the block number.
            events: the events of keys ``block*B ..``, at most ``block_events`` of them.
            extra: more fields for the block's marker (generation time...).
        """
        return self.write_packed(seed, block, pack_block(events), extra=extra)

    def write_packed(
        self,
        seed: int,
        block: int,
        packed: PackedBlock,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """Write one block from its columns (:meth:`write_block` of events already packed:
        what ``bgcache recompress`` re-encodes); returns (its name, bytes written)."""
        n = packed.n_events
        if not 1 <= n <= self.layout.block_events:
            raise UsageError(f"a block holds 1..{self.layout.block_events} events, got {n}")
        name = block_name(block, n, self.layout.block_events)
        path = block_path(seed, name)
        comp = self.layout.compression
        chunk = self.layout.chunk_hits
        n_hits = int(packed.index_delta.shape[0])
        objects = {
            column_key(path, "counts"): encode_chunk(packed.counts, n, comp),
            column_document_key(path, "counts"): json_bytes(
                array_document("counts", n, n, comp, sharded=False)
            ),
            column_document_key(path, "index"): json_bytes(
                array_document("index", n_hits, chunk, comp, sharded=True)
            ),
            column_document_key(path, "charge"): json_bytes(
                array_document("charge", n_hits, chunk, comp, sharded=True)
            ),
        }
        if n_hits:
            objects[column_key(path, "index")] = encode_shard(packed.index_delta, chunk, comp)
            objects[column_key(path, "charge")] = encode_shard(packed.charge, chunk, comp)
        for key, data in objects.items():
            self.storage.write(key, data)
        # make the renames durable before the marker can be: every directory that got an
        # entry (deepest first), up to the stream group that got the block directory
        parents = {key.rsplit("/", 1)[0] for key in objects}
        parents |= {p.rsplit("/", 1)[0] for p in parents} | {path, stream_path(seed)}
        for directory in sorted(parents, key=lambda d: -d.count("/")):
            self.storage.sync_dir(directory)
        nbytes = {
            c: sum(len(d) for k, d in objects.items() if k.startswith(f"{path}/{c}/"))
            for c in ("counts", "index", "charge")
        }
        marker = {
            "kind": "block",
            "seed": seed,
            "block": block,
            "first_index": block * self.layout.block_events,
            "n_events": n,
            "n_hits": n_hits,
            "nbytes": nbytes,
            "written": now(),
            "writer": f"{socket.gethostname()}:{os.getpid()}",
            "software": software_versions(),
            **(dict(extra) if extra else {}),
        }
        marker_bytes = node_document(marker)
        self.storage.write(marker_key(path), marker_bytes)
        self.storage.sync_dir(path)
        return name, sum(nbytes.values()) + len(marker_bytes) + sum(
            len(d) for k, d in objects.items() if k.endswith(ZARR_JSON)
        )

    def ensure_stream(self, seed: int) -> None:
        """Create the group of stream ``seed`` if it does not exist yet."""
        created = self.storage.write_new(
            stream_document_key(seed), node_document({"kind": "stream", "seed": seed})
        )
        if created:
            self.storage.sync_dir(stream_path(seed))
            self.storage.sync_dir(STREAMS)

    def refresh_summary(self, *, attempts: int = 5) -> None:
        """Rewrite the root record's ``streams`` summary from a fresh scan.

        Concurrent writers each call this when they finish; each rewrites the summary and
        scans again until the summary it wrote matches what is complete, so the last writer
        to finish leaves a summary that lists every complete block. Readers never depend on
        the summary (they scan), ``bgcache verify`` checks it.
        """
        for _ in range(attempts):
            self.refresh()
            summary = summary_of(self.streams())
            current = read_root_record(self.storage)
            if current.get("streams") == summary:
                break
            current["streams"] = summary
            current["updated"] = now()
            self.storage.write(ZARR_JSON, node_document(current))
            self.record = current
        self.record = read_root_record(self.storage)


def check_build_location(storage: Storage, model: str | None = None) -> dict[str, Any] | None:
    """Cheap checks of a build's pool location, made before the model is loaded.

    Args:
        storage: the pool location.
        model: the model the build will run; an existing pool of another model is refused.

    Returns:
        The existing pool's root record, or None where a new pool will be created.

    Raises:
        NotAPoolError: a file, or a non-empty directory that is not a pool.
        PoolFormatError: an existing pool with damaged metadata or a newer format.
        PoolMismatchError: an existing pool of another model.
        PoolWriteError: the location cannot be written.
    """
    state = storage.state()
    if state == "file":
        raise NotAPoolError(f"'{storage.url}' is a file: give a new or pool directory as POOL")
    if state == "missing":
        storage.check_creatable()
        return None
    record = None
    if storage.read(ZARR_JSON, MAX_DOCUMENT_BYTES) is not None:
        record = read_root_record(storage)
        held = record["content"].get("model")
        if model is not None and held == IMPORTED_MODEL:
            raise PoolMismatchError(
                f"pool '{storage.url}' holds imported background events (bgcache import), "
                f"this build would add generated {model} events: build into another pool"
            )
        if model is not None and held != model:
            raise PoolMismatchError(
                f"pool '{storage.url}' holds {held} events, this build would make {model} "
                f"events: build into another pool, or use --model {held}"
            )
    elif state == "dir":
        raise NotAPoolError(
            f"'{storage.url}' is a non-empty directory that is not a pool: choose a new or empty directory"
        )
    storage.check_writable()
    return record


def create_or_open_pool(
    location: str | os.PathLike[str] | Storage,
    content: Mapping[str, Any],
    layout: Layout | None,
    *,
    hints: Mapping[str, Any] | None = None,
) -> PoolWriter:
    """Open a pool for writing, creating it when absent; refuse mismatched content.

    Args:
        location: the pool directory.
        content: the generator's content record (``metadata()`` of the generator).
        layout: the layout of a new pool; for an existing pool None, or the same layout.
        hints: non-binding facts to record at creation (checkpoint path).

    Returns:
        A :class:`PoolWriter` of the pool.

    Raises:
        PoolMismatchError: the pool records other content, or another layout was asked.
        NotAPoolError: the location is a file or a non-pool directory.
        PoolWriteError: the location cannot be written.
    """
    storage = open_storage(location)
    missing = storage.state() == "missing"
    check_build_location(storage)  # an existing location is probed for writing there
    if missing:
        storage.check_writable()  # creates the directory (a no-op on object stores)
    if storage.read(ZARR_JSON, MAX_DOCUMENT_BYTES) is None:
        new_record: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "content": dict(content),
            "layout": (layout or Layout()).to_dict(),
            "hints": dict(hints or {}),
            "software": software_versions(),
            "created": now(),
            "streams": [],
        }
        # two writers creating one pool: one wins, the other reads its record below
        storage.write_new(ZARR_JSON, node_document(new_record))
        storage.sync_dir("")
    record = read_root_record(storage)
    differences = content_differences(record["content"], content)
    if differences:
        raise PoolMismatchError(
            f"pool '{storage.url}' holds other events than this build would make "
            f"({'; '.join(differences)}): build into another pool, or use the pool's settings"
        )
    if layout is not None and Layout.from_dict(record["layout"]) != layout:
        have = Layout.from_dict(record["layout"])
        if have.compression != layout.compression:
            raise PoolMismatchError(
                f"pool '{storage.url}' is compressed with {have.compression.codec}, not "
                f"{layout.compression.codec}: a pool's codec is fixed when it is created; leave "
                "--codec out, or make a copy under another codec with 'bgcache recompress'"
            )
        raise PoolMismatchError(
            f"pool '{storage.url}' has block_events={have.block_events}, chunk_hits={have.chunk_hits}: "
            "a pool's layout is fixed when it is created; leave --block-events out or use the pool's value"
        )
    if storage.read(STREAMS_DOCUMENT, MAX_DOCUMENT_BYTES) is None:
        # created with the root; also when a writer was killed between the root and the streams group
        storage.write_new(STREAMS_DOCUMENT, node_document({"kind": "streams"}))
        storage.sync_dir(STREAMS)
        storage.sync_dir("")
    return PoolWriter(storage, record)


__all__ = ["PoolWriter", "check_build_location", "create_or_open_pool"]
