"""The simulation side: a pool-backed source of background events, one per simulated event.

Above :mod:`bgcache.store` (it reads pools) and beside :mod:`bgcache.build` (its fallback
generates events exactly as a build would). Framework adapters (basf2, PyTorch) sit on top.

It follows the draw policy of :mod:`bgcache.draw` (DESIGN 5: disjoint shares, a
seed-derived start, wrapping inside the share, fallback keys that collide with nothing, and
what ``on_exhausted`` does); the names of that module that this one used to define are
re-exported here.

The pool-only path never imports torch: the checkpoint is located and its sha256 checked
at initialisation (hashing the file needs no torch), and torch is imported only when the
first fallback event is needed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bgcache.draw import (
    FALLBACK_INDEX_BITS,
    MAX_JOBS,
    ON_EXHAUSTED,
    check_on_exhausted,
    check_share,
    draw_positions,
    draw_ranges,
    fallback_key,
    fallback_seed,
    generation_seconds_per_event,
    plan_jobs,
    share_bounds,
    start_offset,
)
from bgcache.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptBlockError,
    MissingDependencyError,
    PoolExhaustedError,
    UsageError,
    did_you_mean,
)
from bgcache.hits import SparseEvent
from bgcache.models import file_sha256, get_spec
from bgcache.seeding import EventKey, validate_seed
from bgcache.store.catalog import BlockInfo
from bgcache.store.columns import AnyEvent as Event
from bgcache.store.columns import PackedEvent, unpack_block
from bgcache.store.pool import Pool, open_pool

log = logging.getLogger("bgcache.overlay")

#: What the reader does with a damaged block.
ON_CORRUPT = ("raise", "skip")
#: Events decoded per read (one prefetch unit): small windows keep memory low.
READ_EVENTS = 16
#: Environment variable naming the checkpoint for fallback generation.
CHECKPOINT_ENVVAR = "BGCACHE_CHECKPOINT"


@dataclass
class OverlayStats:
    """Counters of an overlay (times in seconds).

    Attributes:
        from_pool: events handed out from the pool for the first time.
        generated: events generated on the fly after the share ran out.
        reused: pool events handed out again (``on_exhausted="reuse"``).
        skipped_blocks, skipped_events: damaged blocks skipped (``on_corrupt="skip"``);
            ``skipped_blocks`` also counts lost blocks (listed in the root record, marker
            missing), whose events are not in the pool's positions nor ``skipped_events``.
        read_seconds: reading and decoding blocks (in the prefetch thread, if any).
        wait_seconds: ``next_event()`` waiting for the prefetch thread.
        generate_seconds: generating fallback events (loading the model included).
    """

    from_pool: int = 0
    generated: int = 0
    reused: int = 0
    skipped_blocks: int = 0
    skipped_events: int = 0
    read_seconds: float = 0.0
    wait_seconds: float = 0.0
    generate_seconds: float = 0.0

    @property
    def events(self) -> int:
        """Events handed out."""
        return self.from_pool + self.generated + self.reused

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record."""
        return {**asdict(self), "events": self.events}

    def summary(self) -> str:
        """One line for the end-of-job log."""
        return (
            f"{self.events} events: {self.from_pool} from the pool, {self.generated} generated, "
            f"{self.reused} reused, {self.skipped_blocks} damaged blocks skipped; "
            f"reading {self.read_seconds:.2f} s (waited {self.wait_seconds:.2f} s), "
            f"generating {self.generate_seconds:.2f} s"
        )


_END = object()


class _Source:
    """What an overlay's prefetch and decode threads work on: the pool, the share, the
    counters and the fallback generator, without the overlay itself. The threads hold this
    and not the overlay, so an overlay that its user drops without ``close()`` becomes
    unreachable, its finalizer sets ``stop``, and the threads end and free their events."""

    def __init__(self, overlay: PoolOverlay, stop: threading.Event) -> None:
        self.pool, self.seed, self.stats = overlay.pool, overlay.seed, overlay.stats
        self.job, self.njobs, self._n_events = overlay.job, overlay.njobs, overlay._n_events
        self.on_exhausted, self.on_corrupt = overlay.on_exhausted, overlay.on_corrupt
        self.prefetch, self.prefetch_threads = overlay.prefetch, overlay.prefetch_threads
        self.prefetch_generate = overlay.prefetch_generate
        self.packed = overlay.packed
        self.device, self.nintra, self.ninter = overlay.device, overlay.nintra, overlay.ninter
        self.fallback_seed, self.checkpoint = overlay.fallback_seed, overlay.checkpoint
        self._generator: Any = None
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()  # decode threads add to read_seconds
        self._stop = stop

    def _load_generator(self) -> Any:
        """The pool's generator with the pool's content options, loaded as a build loads it."""
        if self._generator is None:
            from bgcache.block_tasks import load_generator

            content = self.pool.content
            if content.get("device_type", "cpu") != str(self.device).split(":")[0]:
                log.warning(
                    "pool %s was built on %s, fallback runs on %s: fallback events may differ "
                    "in a few pixels from what a build on %s would store",
                    self.pool.url,
                    content.get("device_type"),
                    self.device,
                    content.get("device_type"),
                )
            needs_torch = get_spec(self.pool.model).needs_torch
            precision = str(content.get("precision", "fp32"))
            if needs_torch:
                from bgcache.models._torch import device_capabilities
                from bgcache.models.precision import fallback_precision

                precision, warning = fallback_precision(content, device_capabilities(self.device))
                if warning is not None:
                    log.warning("pool %s: %s", self.pool.url, warning)
            self._generator = load_generator(
                {
                    "model": self.pool.model,
                    "checkpoint": self.checkpoint,
                    "device": self.device if needs_torch else "cpu",
                    "optimize": bool(content.get("optimize", True)),
                    "nintra": self.nintra,
                    "ninter": self.ninter,
                    "precision": precision,
                    # one event per pass, or the forward-pass shape a CUDA pool records (its
                    # events then equal what a build would store, at the cost of a padded pass)
                    "batch_events": int(content.get("batch_events", 1)) if needs_torch else None,
                }
            )
        return self._generator

    def _generate(self, k: int) -> tuple[EventKey, Event]:
        key = fallback_key(self.fallback_seed, self.job, k)
        t0 = time.perf_counter()
        with self._lock:
            (event,) = self._load_generator().events([key])
        self.stats.generate_seconds += time.perf_counter() - t0
        return key, event

    def _blocks_in_order(self) -> Iterator[tuple[BlockInfo, range]]:
        """The share's blocks in draw order, each with the in-block offsets to hand out:
        from the start offset to the share's end, then from the share's start on."""
        for positions in draw_ranges(self._n_events, self.seed, self.job, self.njobs):
            yield from self.pool.spans(positions.start, positions.stop)

    def _windows(self) -> Iterator[tuple[BlockInfo, int, int]]:
        """One pass over the share as windows ``(block, lo, hi)`` of up to
        :data:`READ_EVENTS` events (each reads only the chunks it spans: memory stays small)."""
        for info, offsets in self._blocks_in_order():
            for lo in range(offsets.start, offsets.stop, READ_EVENTS):
                yield info, lo, min(lo + READ_EVENTS, offsets.stop)

    def _read_window(self, info: BlockInfo, lo: int, hi: int) -> list[tuple[EventKey, Event]]:
        t0 = time.perf_counter()
        try:
            window = self.pool.read_window(info, lo, hi)
            events: list[Any] = window.events() if self.packed else unpack_block(window)
        finally:
            with self._stats_lock:
                self.stats.read_seconds += time.perf_counter() - t0
        return [(EventKey(info.seed, info.first_index + lo + i), ev) for i, ev in enumerate(events)]

    def _read_pass(self) -> Iterator[list[tuple[EventKey, Event]]]:
        """One pass over the share, a window of events at a time, in draw order; with
        ``prefetch_threads > 1`` several windows are decoded at once (in order)."""
        skipped: set[str] = set()

        def outcome(info: BlockInfo, lo: int, hi: int, result: Any) -> list[Any] | None:
            if info.path in skipped:
                self.stats.skipped_events += hi - lo
                return None
            if isinstance(result, CorruptBlockError):
                if self.on_corrupt == "raise":
                    raise result
                log.error("skipping damaged block %s of pool %s", info.path, self.pool.url)
                skipped.add(info.path)
                self.stats.skipped_blocks += 1
                self.stats.skipped_events += hi - lo
                return None
            return list(result)

        def attempt(info: BlockInfo, lo: int, hi: int) -> Any:
            try:
                return self._read_window(info, lo, hi)
            except CorruptBlockError as exc:
                return exc

        if self.prefetch_threads <= 1 or self.prefetch == 0:
            for info, lo, hi in self._windows():
                if self._stop.is_set():
                    return
                result = None if info.path in skipped else attempt(info, lo, hi)
                got = outcome(info, lo, hi, result)
                if got is not None:
                    yield got
            return
        with ThreadPoolExecutor(self.prefetch_threads, thread_name_prefix="bgcache-decode") as ex:
            pending: deque[tuple[BlockInfo, int, int, Future[Any]]] = deque()
            windows = self._windows()
            for info, lo, hi in windows:
                pending.append((info, lo, hi, ex.submit(attempt, info, lo, hi)))
                if len(pending) >= self.prefetch_threads + 1:
                    break
            while pending:
                if self._stop.is_set():
                    for *_, fut in pending:
                        fut.cancel()
                    return
                info, lo, hi, fut = pending.popleft()
                nxt = next(windows, None)
                if nxt is not None:
                    pending.append((*nxt, ex.submit(attempt, *nxt)))
                got = outcome(info, lo, hi, fut.result())
                if got is not None:
                    yield got

    def _prefetch_loop(self, q: queue.Queue[Any]) -> None:
        """The prefetch thread: one pass (then fallback events, if asked) into ``q``."""

        def put(item: Any) -> bool:
            """Queue ``item``; False once the overlay stops (a consumer that stopped
            drawing must not leave this thread blocked on a full queue: close() joins it)."""
            while not self._stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for block in self._read_pass():
                if not put(block):
                    return
            if self.prefetch_generate and self.on_exhausted == "generate":
                k = 0
                while not self._stop.is_set() and put([self._generate(k)]):
                    k += 1
                return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)


class PoolOverlay:
    """Hands out background events from a pool, one per simulated event.

    Args:
        pool: a pool location or an open :class:`~bgcache.store.pool.Pool`.
        seed: the job's seed (int64; None: 0). It fixes the start inside the share and the
            fallback stream: the same seed, job and pool give the same sequence every time.
        job, njobs: this job's index and the number of jobs sharing the pool.
        on_exhausted: ``"generate"`` (default), ``"reuse"`` or ``"error"``.
        prefetch: windows of up to 16 events decoded ahead in a background thread
            (0: read on demand in the calling thread).
        prefetch_generate: also generate fallback events ahead in that thread (it competes
            with the simulation for cores; off by default).
        prefetch_threads: threads decoding windows at once for the prefetch (default 2:
            decoding releases the GIL, so a burst of draws uses two cores; decoding costs
            ~0.5 ms per event either way).
        checkpoint: checkpoint for fallback generation; default: the path the pool recorded,
            else ``$BGCACHE_CHECKPOINT``.
        device, nintra, ninter: of fallback generation (as :func:`bgcache.models.load_model`).
        on_corrupt: ``"raise"`` (default) a :class:`~bgcache.errors.CorruptBlockError` naming
            the block, or ``"skip"`` the block and count it.
        packed: the prefetch decodes windows into their buffers only (delta-coded packed
            pixel indices and charges, checked as always) and leaves the split into hit
            columns to the consumer: :meth:`next_packed` hands them out as they are (the
            basf2 module's C++ filler takes them), :meth:`next_event` splits each one.

    Raises:
        UsageError: invalid arguments.
        CheckpointNotFoundError, CheckpointMismatchError, MissingDependencyError: fallback
            is possible (``on_exhausted="generate"`` and a GAN pool) but the checkpoint is
            missing or not the pool's (sha256), or torch is not installed — at
            initialisation, not hours later.

    Example:
        >>> import tempfile
        >>> from bgcache.build import build_pool
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_pool(tmp + "/p", model="synthetic", events=4)
        ...     with PoolOverlay(tmp + "/p", seed=1, njobs=2) as overlay:
        ...         events = [overlay.next_event() for _ in range(3)]
        ...         overlay.stats.from_pool, overlay.stats.generated
        (2, 1)
    """

    def __init__(
        self,
        pool: str | os.PathLike[str] | Pool,
        *,
        seed: int | None = None,
        job: int = 0,
        njobs: int = 1,
        on_exhausted: str = "generate",
        prefetch: int = 2,
        prefetch_generate: bool = False,
        prefetch_threads: int = 2,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        nintra: int = 1,
        ninter: int = 1,
        on_corrupt: str = "raise",
        packed: bool = False,
    ) -> None:
        self.pool = pool if isinstance(pool, Pool) else open_pool(pool)
        self.seed = validate_seed(0 if seed is None else seed)
        job, njobs = check_share(job, njobs)
        for name, value, low, high in (
            ("prefetch", prefetch, 0, 1024),
            ("prefetch_threads", prefetch_threads, 1, 64),
            ("nintra", nintra, 1, 1024),
            ("ninter", ninter, 1, 1024),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UsageError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        check_on_exhausted(on_exhausted)
        if on_corrupt not in ON_CORRUPT:
            raise UsageError(
                f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}"
                f"{did_you_mean(str(on_corrupt), ON_CORRUPT)}"
            )
        self.job, self.njobs = job, njobs
        self.on_exhausted, self.on_corrupt = on_exhausted, on_corrupt
        self.prefetch, self.prefetch_generate = prefetch, bool(prefetch_generate)
        self.prefetch_threads = prefetch_threads
        self.packed = bool(packed)
        self.device, self.nintra, self.ninter = device, nintra, ninter
        self.stats = OverlayStats()
        # blocks the pool lists as complete but whose marker is gone are not in its catalog
        lost = self.pool.lost_blocks()
        if lost:
            names = "; ".join(
                f"block {b.path} (seed {b.seed}, indices {b.first_index}..{b.stop_index - 1})"
                for b in lost
            )
            message = (
                f"pool '{self.pool.url}': {names}: listed as complete in the root record but "
                "its marker is missing (damaged or deleted); run 'bgcache verify'"
            )
            if on_corrupt == "raise":
                raise CorruptBlockError(message)
            log.error("skipping %s", message)
            self.stats.skipped_blocks += len(lost)
        self._n_events = len(self.pool)  # the positions the share was cut from
        self.share = share_bounds(self._n_events, job, njobs)
        self.fallback_seed = fallback_seed(self.seed, frozenset(self.pool.streams()))
        #: ``(source, key)`` of the last event handed out; source is pool, generated or reused.
        self.last: tuple[str, EventKey] | None = None
        self.checkpoint: Path | None = None
        if on_exhausted == "generate":
            self.checkpoint = self._locate_fallback(checkpoint)
        self._pass = 0
        self._stop = threading.Event()
        self._source = _Source(self, self._stop)
        # dropped without close(): stop the threads (they hold the source, not the overlay)
        weakref.finalize(self, self._stop.set)
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._reader: Iterator[tuple[EventKey, Event]] | None = None
        self._buffer: list[tuple[EventKey, Event]] = []
        self._handed = 0
        self._start_pass()
        self._closed = False

    # -- fallback ------------------------------------------------------------------------
    def _locate_fallback(self, checkpoint: str | os.PathLike[str] | None) -> Path | None:
        """Find and check the fallback's checkpoint now (sha256 against the pool)."""
        if self.pool.imported:
            raise UsageError(
                f"pool '{self.pool.url}' holds imported background events, which no generator "
                "can make more of: choose on_exhausted='reuse' (wrap around, counted, as "
                "BGOverlayInput does) or on_exhausted='error'"
            )
        spec = get_spec(self.pool.model)
        if not spec.needs_checkpoint:
            return None
        if spec.needs_torch and importlib.util.find_spec("torch") is None:
            raise MissingDependencyError(
                f"pool '{self.pool.url}' holds {self.pool.model} events and on_exhausted="
                "'generate' may need to generate more, which needs PyTorch: pip install "
                "'bgcache[gan]' (or choose on_exhausted='reuse' or 'error')"
            )
        hint = self.pool.record.get("hints", {}).get("checkpoint_path")
        env = os.environ.get(CHECKPOINT_ENVVAR)
        candidates = [c for c in (checkpoint, hint, env) if c]
        if not candidates:
            raise CheckpointNotFoundError(
                f"pool '{self.pool.url}' records no checkpoint path: pass checkpoint=... (or set "
                f"${CHECKPOINT_ENVVAR}) for on-the-fly generation, or choose on_exhausted='reuse'"
            )
        path = Path(candidates[0]).expanduser()
        if not path.is_file():
            where = (
                "given"
                if checkpoint
                else (
                    "recorded in the pool" if candidates[0] == hint else f"in ${CHECKPOINT_ENVVAR}"
                )
            )
            raise CheckpointNotFoundError(
                f"checkpoint {str(path)!r} ({where}) for on-the-fly generation does not exist: "
                "pass checkpoint=... with the pool's checkpoint, or choose on_exhausted='reuse'"
            )
        want = self.pool.content.get("checkpoint_sha256")
        have = file_sha256(path)
        if want != have:
            raise CheckpointMismatchError(
                f"checkpoint {str(path)!r} is not the one pool '{self.pool.url}' was built with "
                f"(sha256 {have[:12]}..., the pool records {str(want)[:12]}...): fallback events "
                "would differ from the pool's; pass the right checkpoint"
            )
        return path

    # -- reading -------------------------------------------------------------------------
    def _start_pass(self) -> None:
        """Begin a pass over the share (the first, or another one for reuse)."""
        self._stop_thread()
        self._stop.clear()
        self._buffer = []
        if self.prefetch == 0:
            self._reader = (item for block in self._source._read_pass() for item in block)
            return
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(
            target=self._source._prefetch_loop,
            args=(self._queue,),
            name="bgcache-prefetch",
            daemon=True,
        )
        self._thread.start()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _next_from_reader(self) -> tuple[EventKey, Event] | None:
        """The next pool event of this pass, or None at its end."""
        if self._buffer:
            return self._buffer.pop()
        if self.prefetch == 0:
            assert self._reader is not None
            return next(self._reader, None)
        assert self._queue is not None
        t0 = time.perf_counter()
        item = self._queue.get()
        self.stats.wait_seconds += time.perf_counter() - t0
        if item is _END:
            self._queue.put(_END)  # stay at the end
            return None
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        self._buffer = list(reversed(item))
        return self._buffer.pop()

    def next_event(self) -> SparseEvent:
        """The next background event (see the module docstring for the policy).

        Raises:
            PoolExhaustedError: the share is used up and ``on_exhausted="error"``.
            CorruptBlockError: a damaged block (``on_corrupt="raise"``).
        """
        event = self._draw()
        return event.unpack() if isinstance(event, PackedEvent) else event

    def next_packed(self) -> PackedEvent:
        """The next background event, as the buffers a pool stores it in (the same draw as
        :meth:`next_event`; a generated event is packed). With ``packed=True`` a pool
        event is handed over as the reader decoded it, without a copy.

        Raises:
            PoolExhaustedError, CorruptBlockError: as :meth:`next_event`.
        """
        event = self._draw()
        return event if isinstance(event, PackedEvent) else PackedEvent.from_event(event)

    def _draw(self) -> Event:
        if self._closed:
            raise UsageError("this overlay is closed")
        size = self.share[1] - self.share[0]
        if self._pass == 0:
            got = self._next_from_reader() if self._handed < size else None
            if got is not None:
                self._handed += 1
                self.stats.from_pool += 1
                self.last = ("pool", got[0])
                return got[1]
            self._pass = 1
            if self.on_exhausted == "error":
                raise PoolExhaustedError(
                    f"job {self.job} of {self.njobs} used up its share of pool '{self.pool.url}' "
                    f"({size} events) and on_exhausted='error': give the job fewer events, more "
                    "jobs a bigger pool, or choose on_exhausted='generate' or 'reuse'"
                )
            if self.on_exhausted == "reuse":
                if size == 0 or self.stats.skipped_events >= size:
                    raise PoolExhaustedError(
                        f"job {self.job} of {self.njobs} has no events of pool '{self.pool.url}' to reuse"
                    )
                self._start_pass()
        if self.on_exhausted == "generate":
            if self.prefetch_generate and self.prefetch > 0:
                got = self._next_from_reader()
                assert got is not None
            else:
                got = self._source._generate(self.stats.generated)
            self.stats.generated += 1
            self.last = ("generated", got[0])
            return got[1]
        got = self._next_from_reader()
        if got is None:  # end of a reuse pass: another one
            self._start_pass()
            got = self._next_from_reader()
            assert got is not None
        self.stats.reused += 1
        self.last = ("reused", got[0])
        return got[1]

    def __iter__(self) -> Iterator[SparseEvent]:
        while True:
            yield self.next_event()

    # -- life cycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop the prefetch thread and log the counters (``bgcache.overlay`` logger, INFO)."""
        if self._closed:
            return
        self._stop_thread()
        self._closed = True
        log.info(
            "bgcache overlay, job %d of %d, pool %s: %s",
            self.job,
            self.njobs,
            self.pool.url,
            self.stats.summary(),
        )

    def __enter__(self) -> PoolOverlay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "CHECKPOINT_ENVVAR",
    "FALLBACK_INDEX_BITS",
    "MAX_JOBS",
    "ON_EXHAUSTED",
    "READ_EVENTS",
    "OverlayStats",
    "PoolOverlay",
    "draw_positions",
    "fallback_key",
    "fallback_seed",
    "generation_seconds_per_event",
    "plan_jobs",
    "share_bounds",
    "start_offset",
]
