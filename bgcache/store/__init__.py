"""The pool store: how events are laid out on disk.

So far this holds the column encoding of event blocks (:mod:`bgcache.store.columns`),
chosen from the measurements in ``docs/performance.md``; the Zarr pool built on it comes
with the pool issue.
"""

from __future__ import annotations

from bgcache.store.columns import PackedBlock, check_block, pack_block, unpack_block, unpack_event

__all__ = ["PackedBlock", "check_block", "pack_block", "unpack_block", "unpack_event"]
