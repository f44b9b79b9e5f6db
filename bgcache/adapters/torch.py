"""PyTorch datasets over a pool: random access (map-style) and the overlay draw policy (iterable).

An adapter on top of :mod:`bgcache.store` and :mod:`bgcache.overlay`: it reads pools and
turns events into tensors; nothing below it knows about torch. This module imports without
torch; torch is imported when the first dataset is created, and a missing torch raises
:class:`~bgcache.errors.MissingDependencyError` with the install hint.

* :class:`PoolDataset` — ``dataset[i]`` is the event at pool position ``i``.
* :class:`PoolIterableDataset` — each DataLoader worker reads its own share of the pool
  sequentially, block by block, following the overlay's draw policy (DESIGN 5).
* :func:`collate_sparse` — batches sparse events of different hit counts into one set of
  concatenated columns plus a ``batch`` index (as torch_geometric does).

Items: ``output="sparse"`` gives a dict with the hit columns ``sensor``, ``u``, ``v``
(int64, ready to index with) and ``charge`` (int32), and ``key``, the event's
:class:`~bgcache.seeding.EventKey` (python ints: an index may exceed int64).
``output="dense"`` gives the uint8 charge tensor of shape (40, 250, 768).

Workers: a dataset keeps the pool's location and the list of its blocks at creation, never
open files; each process opens the pool again on first use. Events are found by their keys,
so a pool extended while it is read (more blocks, a short block superseded by a full one)
hands out the same events at the same positions.

Example:
    >>> import tempfile
    >>> from bgcache.build import build_pool
    >>> from torch.utils.data import DataLoader
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = build_pool(tmp + "/p", model="synthetic", events=6, block_events=4)
    ...     data = PoolDataset(tmp + "/p")
    ...     batch = next(iter(DataLoader(data, batch_size=3, collate_fn=collate_sparse)))
    ...     len(data), batch["key"], int(batch["ptr"][-1]) == len(batch["batch"])
    (6, [EventKey(seed=0, index=0), EventKey(seed=0, index=1), EventKey(seed=0, index=2)], True)
"""

from __future__ import annotations

import bisect
import os
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeAlias, TypeVar, cast

import numpy as np

from bgcache.draw import check_share, draw_positions, draw_ranges, share_bounds, sub_share
from bgcache.errors import (
    EventNotFoundError,
    MissingDependencyError,
    PoolMismatchError,
    PositionError,
    UsageError,
)
from bgcache.hits import SparseEvent
from bgcache.seeding import EventKey, validate_seed
from bgcache.store.catalog import BlockInfo
from bgcache.store.pool import Pool, open_pool

if TYPE_CHECKING:
    from torch import Tensor
    from torch.utils.data import Dataset, IterableDataset

    # For type checkers the datasets are torch's classes (so DataLoader(PoolDataset(...))
    # checks); at run time they become so when the first one is made (_torch_subclass).
    _MapBase: TypeAlias = Dataset[Any]
    _IterableBase: TypeAlias = IterableDataset[Any]
else:
    _MapBase = _IterableBase = object

#: What a dataset item is: the sparse hit columns, or the dense charge image.
OUTPUTS = ("sparse", "dense")
#: The hit columns of a sparse item and their dtypes (names of torch dtypes).
SPARSE_COLUMNS = {"sensor": "int64", "u": "int64", "v": "int64", "charge": "int32"}

_D = TypeVar("_D", bound="_PoolSource")


def _require_torch() -> None:
    """Import torch or raise :class:`MissingDependencyError` with an install hint."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "bgcache's PyTorch datasets need PyTorch, which is not installed: "
            "pip install 'bgcache[gan]' (CPU only: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        ) from None


#: The torch subclasses made so far, by (class, torch base).
_SUBCLASSES: dict[tuple[type, str], type] = {}


def _torch_subclass(cls: type, base_name: str) -> type:
    """``cls`` with the torch.utils.data class ``base_name`` as a further base (made once).

    The DataLoader tells iterable datasets from map-style ones by ``isinstance``, so the
    datasets must derive from torch's classes; deriving late keeps this module torch-free.
    """
    made = _SUBCLASSES.get((cls, base_name))
    if made is not None:
        return made
    from torch.utils import data

    base = getattr(data, base_name)
    if issubclass(cls, base):
        made = cls
    else:
        made = types.new_class(cls.__name__, (cls, base))
        made.__module__ = cls.__module__
        made.__qualname__ = cls.__qualname__
        made.__doc__ = cls.__doc__
        made._bgcache_plain = cls  # type: ignore[attr-defined]
    return _SUBCLASSES.setdefault((cls, base_name), made)


def _rebuild(cls: type[_D], state: dict[str, Any]) -> _D:
    """Unpickle a dataset in a worker process (making its torch subclass there)."""
    _require_torch()
    obj = object.__new__(cast("type[_D]", _torch_subclass(cls, cls._torch_base)))
    obj.__dict__.update(state)
    return obj


class _PoolSource:
    """What both datasets share: the pool's location and blocks, the per-process open pool,
    and the conversion of events into items."""

    #: The torch.utils.data class the instances derive from.
    _torch_base: ClassVar[str] = "Dataset"

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        _require_torch()
        return object.__new__(cast("type[Self]", _torch_subclass(cls, cls._torch_base)))

    def __init__(
        self,
        pool: Pool | str | os.PathLike[str],
        *,
        output: str = "sparse",
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise UsageError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if transform is not None and not callable(transform):
            raise UsageError(f"transform must be callable or None, got {transform!r}")
        opened = pool if isinstance(pool, Pool) else open_pool(pool)
        self.output = output
        self.transform = transform
        self.path = opened.storage.absolute_url()
        self._content = opened.content
        self._blocks: tuple[BlockInfo, ...] = tuple(opened.block_list)
        self._starts = [info.position for info in self._blocks]
        self._n_events = len(opened)
        self._pool: Pool | None = opened

    # -- the pool of this process ---------------------------------------------------------
    @property
    def pool(self) -> Pool:
        """The pool, opened again in each process that unpickled the dataset."""
        if self._pool is None:
            pool = open_pool(self.path)
            if pool.content != self._content:
                raise PoolMismatchError(
                    f"pool '{self.path}' holds other events than when this dataset was "
                    f"created (model {pool.model}, was {self._content.get('model')}): "
                    "create the dataset again"
                )
            self._pool = pool
        return self._pool

    def __reduce__(self) -> tuple[Any, ...]:
        state = {k: v for k, v in self.__dict__.items() if k != "_pool"}
        state["_pool"] = None
        return _rebuild, (type(self).__dict__.get("_bgcache_plain", type(self)), state)

    def _block_at(self, position: int) -> BlockInfo:
        return self._blocks[bisect.bisect_right(self._starts, position) - 1]

    def _current(self, info: BlockInfo) -> BlockInfo:
        """The pool's block now holding the events of ``info`` (a block seen at creation)."""
        found = self.pool.find(info.seed, info.stop_index - 1)
        if found is None:
            raise EventNotFoundError(
                f"pool '{self.path}' no longer holds the events (seed {info.seed}, indices "
                f"{info.first_index}..{info.stop_index - 1}) it held when this dataset was "
                "created: create the dataset again"
            )
        return found[0]

    def _item(self, event: SparseEvent, key: EventKey) -> Any:
        item = to_item(event, key, self.output)
        return item if self.transform is None else self.transform(item)


def to_item(event: SparseEvent, key: EventKey, output: str = "sparse") -> Any:
    """A dataset item of one event.

    Args:
        event: the event.
        key: its key (put in sparse items).
        output: ``"sparse"``: a dict of ``sensor``, ``u``, ``v`` (int64), ``charge``
            (int32) tensors and ``key``; ``"dense"``: the uint8 tensor (40, 250, 768)
            (int32 for charges wider than uint8, as :func:`bgcache.hits.merge` makes).

    Raises:
        MissingDependencyError: torch is not installed.
        UsageError: an unknown ``output``.

    Example:
        >>> item = to_item(SparseEvent([2], [3], [4], [9]), EventKey(1, 5))
        >>> item["v"].tolist(), item["charge"].dtype, item["key"]
        ([4], torch.int32, EventKey(seed=1, index=5))
        >>> int(to_item(SparseEvent([2], [3], [4], [9]), EventKey(1, 5), "dense")[2, 3, 4])
        9
    """
    _require_torch()
    import torch

    if output == "dense":
        image = event.to_dense()  # uint8 for pool events; wider charges (after merge) as int32
        return torch.from_numpy(image if image.dtype == np.uint8 else image.astype(np.int32))
    if output != "sparse":
        raise UsageError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    item: dict[str, Any] = {
        name: torch.from_numpy(getattr(event, name).astype(dtype))
        for name, dtype in SPARSE_COLUMNS.items()
    }
    item["key"] = key
    return item


class PoolDataset(_PoolSource, _MapBase):
    """Map-style dataset: item ``i`` is the event at pool position ``i``.

    Args:
        pool: an open pool or its location.
        output: ``"sparse"`` (default; batch with :func:`collate_sparse`) or ``"dense"``
            (the default collate stacks these into (N, 40, 250, 768)).
        transform: applied to each item before it is returned.

    The positions are those of the pool when the dataset is created. Instances are
    ``torch.utils.data.Dataset``s; they pickle to worker processes as the pool's location
    and block list.

    Raises:
        MissingDependencyError: torch is not installed.
        UsageError: an unknown ``output``, or a ``transform`` that is not callable.
        PoolNotFoundError, NotAPoolError: nothing, or no pool, at ``pool``.

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", events=3)
        ...     data = PoolDataset(tmp + "/p", output="dense")
        ...     len(data), data[2].shape, data[2].dtype, data.key(2)
        (3, torch.Size([40, 250, 768]), torch.uint8, EventKey(seed=0, index=2))
    """

    def __len__(self) -> int:
        return self._n_events

    def key(self, position: int) -> EventKey:
        """The key (seed, index) of the event at ``position`` (negative counts from the end).

        Raises:
            PositionError: the position is not in ``0 .. len(dataset) - 1``.
        """
        n = self._n_events
        if isinstance(position, bool) or not isinstance(position, int | np.integer):
            raise PositionError(f"dataset position must be an integer, got {position!r}")
        pos = int(position) + (n if int(position) < 0 else 0)
        if not 0 <= pos < n:
            raise PositionError(
                f"position {int(position)} is out of range: the dataset holds {n} events"
                + (f" (0..{n - 1})" if n else "")
            )
        info = self._block_at(pos)
        return EventKey(info.seed, info.first_index + pos - info.position)

    def __getitem__(self, position: int) -> Any:
        key = self.key(position)
        return self._item(self.pool.event_by_key(key.seed, key.index), key)

    def __repr__(self) -> str:
        return f"PoolDataset('{self.path}', {self._n_events} events, output={self.output!r})"


class PoolIterableDataset(_PoolSource, _IterableBase):
    """Iterable dataset that reads a pool as the overlay does (DESIGN 5).

    The pool is split into ``njobs`` disjoint shares as :class:`~bgcache.overlay.PoolOverlay`
    splits it; the ``W`` workers of a DataLoader split the share of job ``job`` again:
    worker ``w`` is sub-job ``job * W + w`` of ``njobs * W`` (the union of a job's workers'
    shares is the job's share, whatever ``W``). Each worker reads its share sequentially,
    block by block, from a start derived from ``(seed, sub-job)`` and wraps inside it, so
    one pass hands out each event of the share once; :meth:`positions` lists the order.
    Without workers (``num_workers=0``) the dataset is one worker and hands out exactly
    what job ``job`` of an overlay with the same seed hands out from the pool.

    Args:
        pool: an open pool or its location.
        seed: the seed of the start offsets (int64).
        njobs, job: the number of jobs sharing the pool and this job's index.
        output: ``"sparse"`` (default) or ``"dense"``, as :class:`PoolDataset`.
        passes: passes over the share (None: forever; each pass in the same order).
        transform: applied to each item before it is yielded.

    ``len()`` is the number of items all workers of the job yield together (a TypeError
    when ``passes`` is None).

    Raises:
        MissingDependencyError: torch is not installed.
        UsageError: invalid arguments.
        InvalidSeedError: a seed out of the int64 range.

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", events=10, block_events=4)
        ...     data = PoolIterableDataset(tmp + "/p", seed=3, njobs=2, job=1)
        ...     keys = [item["key"].index for item in data]
        ...     keys, data.positions(), data.positions(worker=1, workers=2)
        ([6, 7, 8, 9, 5], [6, 7, 8, 9, 5], [7, 8, 9])
    """

    _torch_base: ClassVar[str] = "IterableDataset"

    def __init__(
        self,
        pool: Pool | str | os.PathLike[str],
        *,
        seed: int = 0,
        njobs: int = 1,
        job: int = 0,
        output: str = "sparse",
        passes: int | None = 1,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.seed = validate_seed(seed)
        job, njobs = check_share(job, njobs)
        if passes is not None and (
            isinstance(passes, bool) or not isinstance(passes, int) or passes < 1
        ):
            raise UsageError(f"passes must be an integer >= 1 or None (forever), got {passes!r}")
        self.njobs, self.job, self.passes = njobs, job, passes
        super().__init__(pool, output=output, transform=transform)

    def positions(self, worker: int = 0, workers: int = 1) -> list[int]:
        """The pool positions one pass of worker ``worker`` of ``workers`` hands out, in order.

        The same as :func:`bgcache.draw.draw_positions` of its sub-share.
        """
        sub, nsub = sub_share(self.job, self.njobs, worker, workers)
        return draw_positions(self._n_events, self.seed, sub, nsub)

    def __len__(self) -> int:
        if self.passes is None:
            raise TypeError("a PoolIterableDataset with passes=None has no length")
        start, stop = share_bounds(self._n_events, self.job, self.njobs)
        return (stop - start) * self.passes

    def __iter__(self) -> Iterator[Any]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.iter_worker(worker, workers)

    def iter_worker(self, worker: int, workers: int) -> Iterator[Any]:
        """The items of worker ``worker`` of ``workers`` (what ``iter()`` gives in a worker)."""
        sub, nsub = sub_share(self.job, self.njobs, worker, workers)
        ranges = draw_ranges(self._n_events, self.seed, sub, nsub)
        if not (ranges[0] or ranges[1]):
            return
        done = 0
        while self.passes is None or done < self.passes:
            head: tuple[BlockInfo, list[SparseEvent]] | None = None
            for positions in ranges:
                for info, offsets in self._spans(positions.start, positions.stop):
                    if head is not None and head[0] == info:
                        events = head[1]  # the block the start offset splits: read once
                    else:
                        events = self.pool.read_block(self._current(info))
                        head = head or (info, events)
                    for offset in offsets:
                        key = EventKey(info.seed, info.first_index + offset)
                        yield self._item(events[offset], key)
            done += 1

    def _spans(self, start: int, stop: int) -> Iterator[tuple[BlockInfo, range]]:
        """The blocks seen at creation that overlap positions ``[start, stop)``, with the
        offsets inside each (as :meth:`bgcache.store.pool.Pool.spans`)."""
        if stop <= start:
            return
        i = bisect.bisect_right(self._starts, start) - 1
        while i < len(self._blocks) and self._blocks[i].position < stop:
            info = self._blocks[i]
            lo = max(start, info.position) - info.position
            hi = min(stop, info.position + info.n_events) - info.position
            yield info, range(lo, hi)
            i += 1

    def __repr__(self) -> str:
        return (
            f"PoolIterableDataset('{self.path}', {self._n_events} events, seed={self.seed}, "
            f"job={self.job}/{self.njobs}, passes={self.passes}, output={self.output!r})"
        )


def collate_sparse(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch sparse items of different hit counts (a ``collate_fn`` for the DataLoader).

    Args:
        items: sparse dataset items (dicts of ``sensor``, ``u``, ``v``, ``charge``, ``key``).

    Returns:
        The four hit columns of all items concatenated, ``batch`` (int64: the item each hit
        belongs to), ``ptr`` (int64, ``len(items) + 1``: hits of item ``i`` are
        ``ptr[i]:ptr[i+1]``) and ``key`` (the items' keys, a list).

    Raises:
        MissingDependencyError: torch is not installed.
        UsageError: an item is not a sparse item.

    Example:
        >>> a = to_item(SparseEvent([0, 1], [0, 0], [0, 0], [5, 6]), EventKey(0, 0))
        >>> b = to_item(SparseEvent([3], [1], [2], [7]), EventKey(0, 1))
        >>> batch = collate_sparse([a, b])
        >>> batch["sensor"].tolist(), batch["batch"].tolist(), batch["ptr"].tolist()
        ([0, 1, 3], [0, 0, 1], [0, 2, 3])
    """
    _require_torch()
    import torch

    for item in items:
        if not isinstance(item, Mapping) or any(name not in item for name in SPARSE_COLUMNS):
            raise UsageError(
                "collate_sparse batches sparse items (dicts of "
                f"{', '.join(SPARSE_COLUMNS)}), got {type(item).__name__}: "
                "use output='sparse', or the default collate for dense items"
            )
    counts = torch.tensor([len(item["charge"]) for item in items], dtype=torch.int64)
    batch: dict[str, Any] = {}
    for name, dtype in SPARSE_COLUMNS.items():
        columns: list[Tensor] = [item[name] for item in items]
        batch[name] = torch.cat(columns) if columns else torch.zeros(0, dtype=getattr(torch, dtype))
    batch["batch"] = torch.repeat_interleave(torch.arange(len(items)), counts)
    batch["ptr"] = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    batch["key"] = [item["key"] for item in items]
    return batch


__all__ = [
    "OUTPUTS",
    "SPARSE_COLUMNS",
    "PoolDataset",
    "PoolIterableDataset",
    "collate_sparse",
    "to_item",
]
