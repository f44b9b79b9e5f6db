"""Building pools: plan the blocks of a key range, generate them, write them.

:func:`build_pool` is what ``bgcache build`` runs; it never prints (progress goes to an
optional callback). A build asks for the keys ``(seed, first_index) ..
(seed, first_index + events - 1)``; they are cut into the pool's blocks, aligned to
multiples of ``block_events`` (a range starting inside a block is widened to the block's
start). Complete blocks are skipped (resume), so running the same build again completes
what an interrupted one left, with the same bytes.

Generation and writing overlap: with one worker the main thread generates while a writer
thread compresses and writes the previous block; with ``workers > 1`` each worker process
loads the model once and generates, compresses and writes whole blocks itself (several
writers of disjoint blocks are safe, see :mod:`bgcache.store.pool`). ``shard=(k, n)``
makes this process build only the k-th (0-based) of n contiguous parts of the range's
blocks, for array jobs on a batch farm.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from bgcache.block_tasks import (
    BlockTask,
    BuildResult,
    BuildRun,
    Progress,
    generate_events,
    load_generator,
    open_writer,
    write_task,
)
from bgcache.errors import PoolExistsError, PoolMismatchError, UsageError
from bgcache.models import get_spec, validate_threads
from bgcache.models.precision import CONCRETE_PRECISIONS, check_precision
from bgcache.seeding import validate_index, validate_seed
from bgcache.store.format import (
    DEFAULT_BLOCK_EVENTS,
    DEFAULT_BLOCK_EVENTS_GAN_CPU,
    MAX_BLOCK_EVENTS,
    Compression,
    Layout,
    parse_codec,
)
from bgcache.store.pool import Pool, open_storage
from bgcache.store.writer import PoolWriter, check_build_location, create_or_open_pool

#: Metadata fields of a generator that describe the software or a local path, not content.
_NOT_CONTENT = ("checkpoint_path", "torch", "numpy", "reference")

#: Events per generator call of models without a batch of their own (e.g. synthetic).
_DEFAULT_BATCH = 32

#: Most blocks one build (one shard of it) plans: a larger list is a mistyped --events.
MAX_BUILD_BLOCKS = 1 << 20


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"k/N"`` (0 <= k < N) as ``(k, N)``.

    Example:
        >>> parse_shard("2/8")
        (2, 8)
        >>> parse_shard("8/8")
        Traceback (most recent call last):
        ...
        bgcache.errors.UsageError: shard '8/8' is out of range: K must be in 0..7 for N = 8 (K is 0-based)
    """
    if text is None:
        return None
    if isinstance(text, tuple):
        k, n = text
    else:
        parts = str(text).split("/")
        try:
            if len(parts) != 2:
                raise ValueError(text)
            k, n = int(parts[0]), int(parts[1])
        except ValueError:
            raise UsageError(
                f"shard {text!r} is not of the form K/N (e.g. 0/4, the first of 4 parts)"
            ) from None
    if n < 1:
        raise UsageError(f"shard '{k}/{n}': N must be >= 1")
    if not 0 <= k < n:
        raise UsageError(
            f"shard '{k}/{n}' is out of range: K must be in 0..{n - 1} for N = {n} (K is 0-based)"
        )
    return k, n


def plan_blocks(
    seed: int,
    first_index: int,
    events: int,
    block_events: int,
    shard: tuple[int, int] | None = None,
) -> list[BlockTask]:
    """The blocks that hold the keys ``(seed, first_index) .. (seed, first_index + events - 1)``.

    Blocks start at multiples of ``block_events``; the last one may be short. With
    ``shard=(k, n)`` only the k-th of n contiguous parts of the list.

    Example:
        >>> [(t.block, t.n_events) for t in plan_blocks(0, 300, 500, 256)]
        [(1, 256), (2, 256), (3, 32)]
        >>> [(t.block, t.n_events) for t in plan_blocks(0, 0, 1000, 100, shard=(1, 3))]
        [(3, 100), (4, 100), (5, 100)]
    """
    stop = first_index + events
    first, last = block_range(first_index, events, block_events, shard)
    return [
        BlockTask(seed, block, min(block_events, stop - block * block_events), block_events)
        for block in range(first, last)
    ]


def block_range(
    first_index: int, events: int, block_events: int, shard: tuple[int, int] | None
) -> tuple[int, int]:
    """The blocks ``first .. last - 1`` of a range (of its shard): only arithmetic, so a
    shard of a huge range costs nothing for the other shards' blocks."""
    first, last = first_index // block_events, -(-(first_index + events) // block_events)
    if shard is not None:
        k, n_parts = shard
        n = last - first
        first, last = first + k * n // n_parts, first + (k + 1) * n // n_parts
    return first, last


def _check_plan_size(
    first_index: int, events: int, block_events: int, shard: tuple[int, int] | None
) -> None:
    """Refuse a build whose list of blocks would not fit in memory (a mistyped --events)."""
    first, last = block_range(first_index, events, block_events, shard)
    if last - first > MAX_BUILD_BLOCKS:
        where = " in this shard" if shard is not None else ""
        raise UsageError(
            f"events {events:,} make {last - first:,} blocks of {block_events}{where}, more "
            f"than one build plans ({MAX_BUILD_BLOCKS:,}): split the range with --shard K/N "
            "or into several --first-index ranges"
        )


def default_block_events(model: str, device: str) -> int:
    """Block size of a new pool: small for GAN models on a CPU (a block is the unit of resume)."""
    spec = get_spec(model)
    if spec.needs_torch and not str(device).startswith("cuda"):
        return DEFAULT_BLOCK_EVENTS_GAN_CPU
    return DEFAULT_BLOCK_EVENTS


def content_record(metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split generator metadata into the pool's content record and its hints."""
    content = {k: v for k, v in metadata.items() if k not in _NOT_CONTENT}
    hints = {k: metadata[k] for k in ("checkpoint_path",) if metadata.get(k)}
    return content, hints


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise UsageError(f"{name} must be {bound}, got {value}")
    return value


def build_pool(
    pool: str | Path,
    *,
    model: str,
    events: int,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    first_index: int = 0,
    block_events: int | None = None,
    batch_events: int | None = None,
    device: str = "cpu",
    nintra: int = 1,
    ninter: int = 1,
    optimize: bool = True,
    precision: str = "auto",
    codec: str | Compression | None = None,
    shard: str | tuple[int, int] | None = None,
    resume: bool = True,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build (or complete, or extend) a pool with the events of one seed stream.

    Args:
        pool: the pool directory (created if absent).
        model: a registered generator (``bgcache models``); checkpoint: its state_dict.
        events: number of keys to build, from ``first_index`` on.
        seed: the stream's seed (int64).
        block_events: events per block of a new pool (default: 256, 16 for GAN models on
            a CPU); an existing pool keeps its own, and another value is refused.
        batch_events: GAN models: events per forward pass of the network (default 1 on a
            CPU, 8 on a CUDA device; there it is part of the content, recorded in the pool,
            and an existing CUDA pool keeps its own); other models: events per generator
            call (default 32). On a CPU the content does not depend on it.
        device, nintra, ninter, optimize, precision: as :func:`bgcache.models.load_model`;
            ``precision="auto"`` (default) keeps an existing pool's precision, else runs
            bf16-mixed where the device has bf16 matrix hardware and the model passed the
            fidelity gate, fp32 elsewhere (:mod:`bgcache.models.precision`); the result's
            notes say which and why.
        codec: the chunk codec of a new pool, ``"zstd"``, ``"lz4"`` or ``"lz4hc"``, with
            an optional ``":LEVEL"`` (:func:`~bgcache.store.format.parse_codec`; default
            zstd:1); an existing pool keeps its own, and another codec is refused
            (``bgcache recompress`` makes a copy under another).
        shard: ``"k/N"`` or ``(k, N)``: build only the k-th (0-based) of N parts.
        resume: skip complete blocks (default). False refuses to run if any block of the
            range is already complete.
        workers: processes that generate and write blocks in parallel (on this machine).
        scheduler: address of a Dask scheduler (``tcp://host:port``): the blocks become
            tasks on its workers, which write them straight into the pool (a path all of
            them reach); needs ``pip install 'bgcache[dask]'``. ``workers`` is then unused.
        progress: called as ``progress(done, total)`` in events.

    Returns:
        A :class:`BuildResult`.

    Raises:
        UsageError: invalid arguments. UnknownModelError, CheckpointError: as when loading.
        PoolMismatchError: the pool records another model, checkpoint or options.
        PoolWriteError: the location cannot be written (complete blocks are kept).

    Example:
        >>> import tempfile
        >>> from bgcache import open_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     r = build_pool(tmp + "/pool", model="synthetic", seed=7, events=10)
        ...     r.events_written, r.blocks_written, len(open_pool(tmp + "/pool"))
        (10, 1, 10)
    """
    t_start = time.perf_counter()
    seed = validate_seed(seed)
    events = _check_int("events", events, 1)
    first_index = validate_index(first_index)
    validate_index(first_index + events - 1)
    if block_events is not None:
        block_events = _check_int("block_events", block_events, 1, MAX_BLOCK_EVENTS)
    if batch_events is not None:
        batch_events = _check_int("batch_events", batch_events, 1)
    workers = _check_int("workers", workers, 1, 256)
    compression = parse_codec(codec) if codec is not None else None
    nintra, ninter = validate_threads(nintra, ninter)
    shard_kn = parse_shard(shard)
    if scheduler is not None:
        from bgcache.distributed import check_address

        check_address(scheduler)  # a malformed address is refused before anything else
    spec = get_spec(model)
    if checkpoint is not None and not spec.needs_checkpoint:
        checkpoint = None
    storage = open_storage(pool)
    existing = check_build_location(storage, model)  # before loading a GAN for minutes
    if existing is None:
        layout = Layout(
            block_events or default_block_events(model, device),
            compression=compression or Compression(),
        )
    else:
        layout = Layout.from_dict(existing["layout"])
        asked = Layout(
            block_events or layout.block_events,
            layout.chunk_hits,
            compression or layout.compression,
        )
        layout = asked  # another block size or codec than the pool's is refused below
    _check_plan_size(first_index, events, layout.block_events, shard_kn)
    if spec.needs_torch and batch_events is None and existing is not None:
        batch_events = existing["content"].get("batch_events")  # a CUDA pool keeps its own
    check_precision(precision)
    auto_from_pool = False
    if precision == "auto" and existing is not None and spec.needs_torch:
        recorded = existing["content"].get("precision")
        if recorded in CONCRETE_PRECISIONS:  # every event of a pool is of one precision
            precision, auto_from_pool = str(recorded), True
        if recorded == "bf16-mixed" and not optimize:  # said as the content check says it
            raise PoolMismatchError(
                f"pool '{storage.url}' holds other events than this build would make "
                "(optimize: pool has True, this build False; bf16-mixed runs on the fast path "
                "only): drop --no-optimize, or build into another pool"
            )
    # how this process, worker processes and Dask workers load the generator
    options = {
        "model": model,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "device": device,
        "optimize": optimize,
        "nintra": nintra,
        "ninter": ninter,
        "precision": precision,
        **({"batch_events": batch_events} if spec.needs_torch else {}),
    }
    client = None
    if scheduler is not None:
        from bgcache.distributed import connect

        client = connect(scheduler)  # an unreachable scheduler fails before anything is written

    try:
        t0 = time.perf_counter()
        gen = load_generator(options)
        load_seconds = time.perf_counter() - t0
        if spec.needs_torch:
            # every process runs what this one resolved, on the same device class
            options["precision"] = gen.precision
            options["device_class"] = gen.metadata().get("device_class")
        batch = getattr(gen, "batch_events", None) or batch_events or _DEFAULT_BATCH
        content, hints = content_record(dict(gen.metadata()))
        target = create_or_open_pool(storage, content, layout, hints=hints)
        B = target.layout.block_events
        result = BuildResult(
            pool=storage.url,
            model=model,
            seed=seed,
            first_index=first_index,
            stop_index=first_index + events,
            shard=shard_kn,
            block_events=B,
            load_seconds=load_seconds,
            workers=workers,
        )
        if spec.needs_torch and precision == "auto":
            result.notes.append(f"precision {gen.precision} (auto: {gen.precision_reason})")
        elif auto_from_pool:
            result.notes.append(f"precision {gen.precision} (auto: the pool's precision)")
        todo, total = plan_todo(target, result, seed, first_index, events, shard_kn, resume=resume)
        run = BuildRun(
            url=storage.absolute_url() if client is not None else storage.url,
            options=options,
            todo=todo,
            batch=batch,
            result=result,
            progress=progress,
            done=0,
            total=total,
        )

        def execute() -> None:
            if client is not None:
                from bgcache.distributed import build_on_dask

                build_on_dask(run, client)
            elif workers == 1:
                build_inline(run, target, gen)
            else:
                _build_workers(run, workers)

        if workers > 1 or client is not None:
            del gen  # each worker loads its own
        run_blocks(target, run, execute)
        result.seconds = time.perf_counter() - t_start
        return result
    finally:
        if client is not None:
            client.close()


def plan_todo(
    target: PoolWriter,
    result: BuildResult,
    seed: int,
    first_index: int,
    events: int,
    shard: tuple[int, int] | None,
    *,
    resume: bool,
) -> tuple[list[BlockTask], int]:
    """The blocks of a range (of its shard) still to write, and the range's events in all.

    Counts the planned and the skipped (already complete) blocks in ``result`` and notes a
    range that starts inside a block.

    Raises:
        PoolExistsError: ``resume=False`` and some block of the range is complete.
    """
    B = target.layout.block_events
    if first_index % B:
        result.notes.append(
            f"the range starts inside block {first_index // B}: building from index {first_index // B * B}"
        )
    tasks = plan_blocks(seed, first_index, events, B, shard)
    todo = [t for t in tasks if not _complete(target, t)]
    result.blocks_total = len(tasks)
    result.blocks_skipped = len(tasks) - len(todo)
    result.events_skipped = sum(t.n_events for t in tasks) - sum(t.n_events for t in todo)
    if not resume and result.blocks_skipped:
        raise PoolExistsError(
            f"pool '{target.url}' already holds {result.blocks_skipped} complete blocks of this "
            "range and --no-resume was given: drop --no-resume to complete only what is missing"
        )
    return todo, sum(t.n_events for t in tasks)


def run_blocks(target: PoolWriter, run: BuildRun, execute: Callable[[], None]) -> None:
    """Write ``run.todo`` with ``execute`` (an executor of the run), then rewrite the root
    record's summary (also after a failure: complete blocks stay listed) and count the
    pool's events in the result."""
    run.tick(run.result.events_skipped)
    if run.todo:
        target.ensure_stream(run.todo[0].seed)
        try:
            execute()
        finally:
            target.refresh_summary()
    else:
        target.refresh_summary()
    run.result.pool_events = len(target)


def _complete(pool: Pool, task: BlockTask) -> bool:
    found = pool.find(task.seed, task.first_index)
    return found is not None and found[0].n_events >= task.n_events


_STOP = object()


def build_inline(run: BuildRun, pool: PoolWriter, gen: Any) -> None:
    """Generate in this thread, compress and write in a writer thread (one block queued).

    ``gen`` is anything with ``events(keys)``: a generator, or the importer's reader.
    """
    blocks: queue.Queue[Any] = queue.Queue(maxsize=1)
    failure: list[BaseException] = []
    result = run.result

    def writer() -> None:
        while True:
            item = blocks.get()
            if item is _STOP:
                return
            task, events, gen_seconds = item
            if failure:
                continue
            t0 = time.perf_counter()
            try:
                _, nbytes = pool.write_block(
                    task.seed, task.block, events, extra={"generate_seconds": round(gen_seconds, 3)}
                )
            except BaseException as exc:  # handed to the main thread
                failure.append(exc)
                continue
            # generation time is counted by the generating thread, progress as it generates
            result.add_block(task.n_events, nbytes, 0.0, time.perf_counter() - t0)

    thread = threading.Thread(target=writer, name="bgcache-writer", daemon=True)
    thread.start()
    try:
        for task in run.todo:
            if failure:
                break
            t0 = time.perf_counter()
            events = generate_events(gen, task.keys(), run.batch, run.tick)
            seconds = time.perf_counter() - t0
            result.generate_seconds += seconds
            blocks.put((task, events, seconds))
    finally:
        blocks.put(_STOP)  # the writer finishes the blocks already generated
        thread.join()
    if failure:
        raise failure[0]


# -- worker processes ----------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(url: str, options: dict[str, Any], parent: int) -> None:
    """Tie the worker's life to the build's process, then load the model once."""
    die_with_parent(parent)
    _WORKER["gen"] = load_generator(options)
    _WORKER["pool"] = open_writer(url)


def die_with_parent(parent: int, interval: float = 0.5) -> None:
    """End this process when process ``parent`` ends, however it ends (kill -9 included),
    so that worker processes never outlive a build holding a model or GPU memory.

    On Linux the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``); on every
    system a daemon thread also checks every ``interval`` seconds whether this process was
    handed to another parent, which is how a parent's death shows.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="bgcache-parent-watch", daemon=True).start()


def _worker_block(task: BlockTask, batch: int) -> tuple[int, int, float, float]:
    return write_task(_WORKER["gen"], _WORKER["pool"], task, batch)


def _build_workers(run: BuildRun, workers: int) -> None:
    """Each worker process generates, compresses and writes whole blocks."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(run.url, run.options, os.getpid()),
    ) as ex:
        pending: set[Future[tuple[int, int, float, float]]] = set()
        queued = iter(run.todo)
        try:
            for task in queued:
                pending.add(ex.submit(_worker_block, task, run.batch))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    run.count(*fut.result())
                    following = next(queued, None)
                    if following is not None:
                        pending.add(ex.submit(_worker_block, following, run.batch))
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


__all__ = [
    "BlockTask",
    "BuildResult",
    "Progress",
    "block_range",
    "build_pool",
    "content_record",
    "default_block_events",
    "load_generator",
    "parse_shard",
    "plan_blocks",
    "plan_todo",
    "run_blocks",
]
