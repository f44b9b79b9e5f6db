"""The unit of work of a build: one block of keys, generated and written; a build's tally.

Below :mod:`bgcache.build` (which plans the blocks and picks an executor) and
:mod:`bgcache.distributed` (the Dask executor), which both run what is here: every executor
(the writer thread of one process, worker processes, Dask workers) loads its generator
with :func:`load_generator`, builds a :class:`BlockTask` with :func:`write_task` (or the
same two steps apart) and counts it in the build's :class:`BuildRun`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bgcache.errors import DeviceError
from bgcache.hits import SparseEvent
from bgcache.models import load_model
from bgcache.seeding import EventKey
from bgcache.store.pool import open_storage
from bgcache.store.records import read_root_record
from bgcache.store.writer import PoolWriter

#: ``progress(done, total)``: events done so far (skipped ones included) of the total.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BlockTask:
    """One block to build: keys ``(seed, block*B) .. (seed, block*B + n_events - 1)``."""

    seed: int
    block: int
    n_events: int
    block_events: int

    @property
    def first_index(self) -> int:
        """Index of the block's first event."""
        return self.block * self.block_events

    def keys(self) -> list[EventKey]:
        """The block's event keys."""
        return [EventKey(self.seed, self.first_index + i) for i in range(self.n_events)]


@dataclass
class BuildResult:
    """What a build did (all times in seconds)."""

    pool: str
    model: str
    seed: int
    first_index: int
    stop_index: int
    shard: tuple[int, int] | None
    block_events: int
    blocks_total: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    events_written: int = 0
    events_skipped: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    generate_seconds: float = 0.0
    write_seconds: float = 0.0
    workers: int = 1
    pool_events: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float | None:
        """Events written per second of build time."""
        return (
            self.events_written / self.seconds if self.seconds > 0 and self.events_written else None
        )

    def add_block(self, n_events: int, nbytes: int, generate_s: float, write_s: float) -> None:
        """Count one block written (by this process, a worker process or a Dask task)."""
        self.blocks_written += 1
        self.events_written += n_events
        self.bytes_written += nbytes
        self.generate_seconds += generate_s
        self.write_seconds += write_s

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record of the build."""
        out = asdict(self)
        out["shard"] = list(self.shard) if self.shard else None
        out["events_per_second"] = self.events_per_second
        out["bytes_per_event"] = (
            self.bytes_written / self.events_written if self.events_written else None
        )
        return out


@dataclass
class BuildRun:
    """What every executor of one build shares: where, what, and the running tally.

    Attributes:
        url: the pool's location as another process or machine opens it.
        options: how to load the generator (:func:`load_generator`).
        todo: the blocks to build.
        batch: events per generator call.
        result: the build's result, filled as blocks complete.
        progress: called as ``progress(done, total)`` in events.
        done, total: events done so far (skipped ones included) and in all.
    """

    url: str
    options: dict[str, Any]
    todo: list[BlockTask]
    batch: int
    result: BuildResult
    progress: Progress | None
    done: int
    total: int

    def tick(self, n_events: int) -> None:
        """``n_events`` more events are done (generated, or in a written block)."""
        self.done += n_events
        if self.progress is not None:
            self.progress(self.done, self.total)

    def count(self, n_events: int, nbytes: int, generate_s: float, write_s: float) -> None:
        """A block written by a worker process or a Dask task: add it and tick."""
        self.result.add_block(n_events, nbytes, generate_s, write_s)
        self.tick(n_events)


def load_generator(options: dict[str, Any]) -> Any:
    """The generator of a build's ``options`` (model, checkpoint and the
    :func:`bgcache.models.load_model` keywords), as every process of a build loads it."""
    opts = dict(options)
    expected_class = opts.pop("device_class", None)
    gen = load_model(opts.pop("model"), opts.pop("checkpoint"), **opts)
    made_on = gen.metadata().get("device_class")
    if expected_class is not None and made_on != expected_class:
        raise DeviceError(
            f"this worker's device is {made_on}, the build's {expected_class}: "
            f"{opts.get('precision')} events depend on the kernels of the device class; run "
            "every worker of a reduced-precision build on one class (or build in fp32)"
        )
    return gen


def open_writer(url: str) -> PoolWriter:
    """The pool at ``url``, opened in a worker process or on a Dask worker to write blocks."""
    storage = open_storage(url)
    return PoolWriter(storage, read_root_record(storage))


def generate_events(
    gen: Any, keys: Sequence[EventKey], batch: int, tick: Callable[[int], None] | None
) -> list[SparseEvent]:
    out: list[SparseEvent] = []
    for i in range(0, len(keys), batch):
        part = keys[i : i + batch]
        out.extend(gen.events(part))
        if tick is not None:
            tick(len(part))
    return out


def write_task(
    gen: Any, pool: PoolWriter, task: BlockTask, batch: int
) -> tuple[int, int, float, float]:
    """Generate, compress and write one block; ``(events, bytes, generate s, write s)``."""
    t0 = time.perf_counter()
    events = generate_events(gen, task.keys(), batch, None)
    t1 = time.perf_counter()
    _, nbytes = pool.write_block(
        task.seed, task.block, events, extra={"generate_seconds": round(t1 - t0, 3)}
    )
    return task.n_events, nbytes, t1 - t0, time.perf_counter() - t1


__all__ = [
    "BlockTask",
    "BuildResult",
    "BuildRun",
    "Progress",
    "generate_events",
    "load_generator",
    "open_writer",
    "write_task",
]
