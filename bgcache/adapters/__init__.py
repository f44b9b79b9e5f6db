"""Adapters of bgcache to frameworks: a basf2 module and PyTorch datasets.

The top layer: adapters sit on :mod:`bgcache.overlay` and :mod:`bgcache.store` and translate
their events into a framework's objects; nothing below them knows a framework.

* :mod:`bgcache.adapters.basf2` — a basf2 module that fills the ``PXDDigits`` + extension
  collection of BGOverlayInput from a pool, and :func:`~bgcache.adapters.basf2.inject_overlay`
  to place it in a simulation path (runs inside a Belle II basf2 installation).
* :mod:`bgcache.adapters.torch` — PyTorch datasets over a pool.

Both frameworks are imported lazily, when a module or dataset is created: importing this
package (or either adapter module) imports neither basf2, ROOT nor torch, and a missing
framework raises :class:`~bgcache.errors.MissingDependencyError` with a hint.
"""

from __future__ import annotations

__all__: list[str] = []
