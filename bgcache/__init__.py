"""bgcache: pools of pre-generated GAN beam-background events for Belle II PXD simulation.

Importing bgcache never imports torch: only GAN generation (``load_model`` of a GAN,
building GAN pools, on-the-fly fallback) does.

Example:
    >>> import bgcache
    >>> gen = bgcache.load_model("synthetic")
    >>> ev = gen.events([(0, 0)])[0]
    >>> ev.n_hits > 0
    True
"""

from __future__ import annotations

from bgcache._version import __version__
from bgcache.build import BuildResult, build_pool
from bgcache.errors import BgcacheError
from bgcache.geometry import IMAGE_SHAPE, SENSORS, pack_vxd_id, unpack_vxd_id
from bgcache.hits import SparseEvent, merge
from bgcache.models import get_spec, load_model, registered_models
from bgcache.overlay import PoolOverlay
from bgcache.seeding import EventKey, event_key, seed_from_string
from bgcache.store import Pool, open_pool

__all__ = [
    "IMAGE_SHAPE",
    "SENSORS",
    "BgcacheError",
    "BuildResult",
    "EventKey",
    "Pool",
    "PoolOverlay",
    "SparseEvent",
    "__version__",
    "build_pool",
    "event_key",
    "get_spec",
    "load_model",
    "merge",
    "open_pool",
    "pack_vxd_id",
    "registered_models",
    "seed_from_string",
    "unpack_vxd_id",
]
