"""The pool store: how events are laid out on disk, and the :class:`Pool` that reads them.

Layers, bottom up: :mod:`~bgcache.store.columns` (column encoding of a block of events),
:mod:`~bgcache.store.format` (names, version, Zarr documents: the on-disk contract),
:mod:`~bgcache.store.shards` (chunk and shard bytes), :mod:`~bgcache.store.storage`
(where bytes live: a local directory; :mod:`~bgcache.store.s3` for ``s3://`` URLs),
:mod:`~bgcache.store.catalog` (which blocks are complete), :mod:`~bgcache.store.records`
(the records in the metadata documents: root record, block markers),
:mod:`~bgcache.store.pool` (open and read), :mod:`~bgcache.store.writer` (create and
write), :mod:`~bgcache.store.verify` (check everything, through the reader) and
:mod:`~bgcache.store.recompress` (copy a pool under another codec). Nothing here imports
torch.
"""

from __future__ import annotations

from bgcache.store.columns import (
    PackedBlock,
    PackedEvent,
    check_block,
    pack_block,
    unpack_block,
    unpack_event,
)
from bgcache.store.format import FORMAT_NAME, FORMAT_VERSION, Layout
from bgcache.store.pool import BlockInfo, Pool, open_pool

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BlockInfo",
    "Layout",
    "PackedBlock",
    "PackedEvent",
    "Pool",
    "check_block",
    "open_pool",
    "pack_block",
    "unpack_block",
    "unpack_event",
]
