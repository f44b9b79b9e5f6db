"""Pool store benchmarks: bytes/event, read throughput, random access, build speed.

Everything is measured in one run, so the ratios compare like with like:

1. **Storage**: a synthetic pool's bytes/event on disk (every object of its complete
   blocks, metadata included) against the best single-codec encoding of the same hits in
   memory (the candidates of ``benchmarks/encodings.py``, one chunk per column per event)
   and against the independent-pixel information bound.
2. **Sequential read** on one core (blosc with 1 thread, process pinned to one CPU):
   ``Pool.blocks()`` to ``SparseEvent`` objects, against the in-memory decode of the same
   bytes (chunks read into memory first, then the same decode functions).
3. **Random access**: one event at a random position, warm (file cache and marker cache
   warm), and through a newly opened pool (catalog scan included).
4. **Build**: synthetic pool build with 1 and 2 worker processes (events/s), and for GAN
   models the overhead of storing: the same keys generated only vs built into a pool.
5. **zarr-python** (``--parts zarr``): bgcache's own reader and writer against zarr-python's
   array API on the same pool, one core: the same arrays (zarr opens the pool's block
   columns as they are) and, for writing, the same block with the same codecs and sharding
   (``bytes -> blosc -> crc32c`` inner chunks in one ``sharding_indexed`` shard; the bytes
   are checked equal). Writing a block, ``Pool.blocks()``, one random event.

Run:  python benchmarks/pool.py [--events 1024] [--gan convnet] [--gan-events 8] [--parts ...]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _timing import best_time, paired_medians, ranged_read_times
from numcodecs import blosc

from bgcache.build import build_pool
from bgcache.models import load_model
from bgcache.store import open_pool
from bgcache.store.columns import PackedBlock, pack_block, unpack_block
from bgcache.store.format import COLUMN_DTYPES, COLUMNS, column_key
from bgcache.store.pool import Pool
from bgcache.store.records import read_root_record
from bgcache.store.shards import decode_chunk, decode_shard
from bgcache.store.storage import LocalStorage
from bgcache.store.writer import create_or_open_pool


def _sibling(name: str) -> Any:
    """A module of this folder by file ("encodings" would import the standard library's)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).with_name(f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_encodings = _sibling("encodings")
candidates, entropy_bound_bytes = _encodings.candidates, _encodings.entropy_bound_bytes
machine = _sibling("generate").machine


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Pin this process to one CPU and blosc to one thread for the duration."""
    before = os.sched_getaffinity(0)
    threads = blosc.get_nthreads()
    os.sched_setaffinity(0, {max(before)})
    blosc.set_nthreads(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
        blosc.set_nthreads(threads)


def storage(pool_path: Path, seed: int, n: int) -> dict[str, Any]:
    pool = open_pool(pool_path)
    info = pool.describe()
    events = load_model("synthetic").events([(seed, i) for i in range(n)])
    bound = entropy_bound_bytes(events)
    rows = []
    for cand in candidates():
        if cand.name.startswith("dense"):
            continue  # 50x larger: not a contender, and slow
        size = sum(len(c) for ev in events for c in cand.encode(ev)) / n
        rows.append((cand.name, size))
    best_name, best = min(rows, key=lambda r: r[1])
    return {
        "pool_bytes_per_event": info["bytes_per_event"],
        "hits_per_event": info["mean_hits_per_event"],
        "bound": bound,
        "codecs": rows,
        "best_name": best_name,
        "best": best,
    }


def sequential(pool_path: Path, repeats: int = 3) -> dict[str, float]:
    pool = open_pool(pool_path)
    n = len(pool)
    list(pool.blocks())  # file cache warm
    # the same bytes, in memory
    raw = []
    for info in pool.block_list:
        base = info.path
        record, _ = pool.block_marker(info)
        raw.append(
            (
                info.n_events,
                int(record["n_hits"]),
                pool.storage.read(column_key(base, "counts")),
                pool.storage.read(column_key(base, "index")),
                pool.storage.read(column_key(base, "charge")),
            )
        )
    chunk = pool.layout.chunk_hits

    def decode_in_memory() -> int:
        count = 0
        for n_ev, n_hits, counts, index, charge in raw:
            c = decode_chunk(counts, COLUMN_DTYPES["counts"], "counts")[:n_ev]
            i = decode_shard(index, n_hits, chunk, COLUMN_DTYPES["index"], "index")
            q = decode_shard(charge, n_hits, chunk, COLUMN_DTYPES["charge"], "charge")
            count += len(unpack_block(PackedBlock(c, i, q)))
        return count

    def read_pool() -> int:
        fresh = open_pool(pool_path)  # no cached markers
        return sum(len(events) for _, events in fresh.blocks())

    with one_core():
        t_pool, t_mem = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            assert read_pool() == n
            t_pool.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert decode_in_memory() == n
            t_mem.append(time.perf_counter() - t0)
    return {
        "events": n,
        "pool_events_per_s": n / min(t_pool),
        "memory_events_per_s": n / min(t_mem),
        "ratio": min(t_pool) / min(t_mem),
    }


def random_access(pool_path: Path, draws: int = 500) -> dict[str, float]:
    pool = open_pool(pool_path)
    n = len(pool)
    rng = random.Random(1)
    with one_core():
        for i in range(n):
            pool.event(i)  # warm: file cache and marker cache
        warm = []
        for _ in range(draws):
            pos = rng.randrange(n)
            t0 = time.perf_counter()
            pool.event(pos)
            warm.append(time.perf_counter() - t0)
        fresh = []
        for _ in range(min(draws, 100)):
            pos = rng.randrange(n)
            t0 = time.perf_counter()
            open_pool(pool_path).event(pos)
            fresh.append(time.perf_counter() - t0)
    return {
        "warm_median_ms": 1e3 * statistics.median(warm),
        "warm_p95_ms": 1e3 * float(np.percentile(warm, 95)),
        "open_and_read_median_ms": 1e3 * statistics.median(fresh),
    }


def build_speed(tmp: Path, n: int) -> dict[str, float]:
    out = {}
    for workers in (1, 2):
        r = build_pool(
            tmp / f"build-{workers}", model="synthetic", seed=11, events=n, workers=workers
        )
        out[f"events_per_s_{workers}"] = r.events_written / r.seconds
        out[f"seconds_{workers}"] = r.seconds
    gen = load_model("synthetic")
    t0 = time.perf_counter()
    gen.events([(12, i) for i in range(n // 4)])
    out["generate_only_events_per_s_1"] = (n // 4) / (time.perf_counter() - t0)
    return out


def gan_overhead(tmp: Path, model: str, n: int, repeats: int = 2) -> dict[str, float]:
    """Generating only vs building into a pool, the same keys, alternated ``repeats`` times
    (best of each); and, robust to machine noise, the build's own split of its wall time."""
    from bgcache.models.checkpoint import init_checkpoint

    ckpt = tmp / f"{model}.pt"
    init_checkpoint(model, ckpt)
    t_gen, t_build, inside = [], [], []
    for rep in range(repeats):
        # like the build: a freshly loaded generator, its first event cold
        gen = load_model(model, ckpt)
        t0 = time.perf_counter()
        for i in range(n):
            gen.events([(3, i)])
        t_gen.append(time.perf_counter() - t0)
        del gen
        r = build_pool(
            tmp / f"{model}-pool-{rep}",
            model=model,
            checkpoint=ckpt,
            seed=3,
            events=n,
            block_events=max(1, n // 4),
        )
        wall = r.seconds - r.load_seconds
        t_build.append(wall)
        inside.append((wall - r.generate_seconds) / wall)
        bytes_per_event = r.bytes_written / n
    return {
        "events": n,
        "generate_only_s": min(t_gen),
        "build_s": min(t_build),
        "overhead": (min(t_build) - min(t_gen)) / min(t_build),
        "overhead_in_run": min(inside),
        "bytes_per_event": bytes_per_event,
    }


class ZarrLocalStorage(LocalStorage):
    """bgcache's read path on zarr-python's ``LocalStore`` (each read a sync call into
    zarr's event loop), to time the reader with zarr's store layer under it."""

    def __init__(self, root: Path) -> None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.storage import LocalStore

        super().__init__(root)
        self._store = LocalStore(str(root), read_only=True)
        self._prototype = default_buffer_prototype()

    def read(self, key: str) -> bytes | None:
        from zarr.core.sync import sync

        buf = sync(self._store.get(key, self._prototype))
        return None if buf is None else buf.to_bytes()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        from zarr.abc.store import RangeByteRequest, SuffixByteRequest
        from zarr.core.sync import sync

        request = (
            SuffixByteRequest(-offset) if offset < 0 else RangeByteRequest(offset, offset + length)
        )
        buf = sync(self._store.get(key, self._prototype, request))
        if buf is None:
            raise FileNotFoundError(key)
        return buf.to_bytes()[:length]

    def exists(self, key: str) -> bool:
        from zarr.core.sync import sync

        return bool(sync(self._store.exists(key))) or super().exists(key)  # groups: folders


def zarr_api(pool_path: Path, tmp: Path, draws: int = 300) -> dict[str, tuple[float, float]]:
    """(bgcache, zarr-python) per operation, seconds; one core."""
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec
    from zarr.storage import LocalStore

    pool = open_pool(pool_path)
    blocks = pool.block_list
    n = len(pool)
    layout = pool.layout
    store = LocalStore(str(pool_path), read_only=True)
    out: dict[str, tuple[float, float]] = {}

    def columns_of(info: Any) -> dict[str, Any]:
        return {c: zarr.open_array(store, path=f"{info.path}/{c}", mode="r") for c in COLUMNS}

    def blocks_bgcache() -> int:
        return sum(len(events) for _, events in open_pool(pool_path).blocks())

    def blocks_zarr() -> int:
        count = 0
        for info in blocks:
            arrays = columns_of(info)
            packed = PackedBlock(*(arrays[c][:] for c in COLUMNS))
            count += len(unpack_block(packed))
        return count

    with one_core():
        assert blocks_bgcache() == blocks_zarr() == n  # file cache warm, same events
        out["Pool.blocks(), per event"] = (
            best_time(blocks_bgcache, 3) / n,
            best_time(blocks_zarr, 3) / n,
        )

        # one random event, warm: bgcache's marker cache; zarr's arrays opened, counts read
        rng = random.Random(2)
        starts = [b.position for b in blocks]
        opened: dict[str, tuple[dict[str, Any], np.ndarray]] = {}

        def event_zarr(pos: int) -> Any:
            i = bisect.bisect_right(starts, pos) - 1
            info, offset = blocks[i], pos - starts[i]
            if info.path not in opened:
                arrays = columns_of(info)
                opened[info.path] = (arrays, arrays["counts"][:])
            arrays, counts = opened[info.path]
            first = int(counts[:offset].sum())
            last = first + int(counts[offset])
            packed = PackedBlock(
                counts[offset : offset + 1],
                arrays["index"][first:last],
                arrays["charge"][first:last],
            )
            return unpack_block(packed)[0]

        for pos in range(n):
            assert event_zarr(pos) == pool.event(pos)  # the same events; caches warm
        positions = [rng.randrange(n) for _ in range(draws)]
        out["one random event (median)"] = paired_medians(positions, pool.event, event_zarr)

        # writing one full block: bgcache's writer (fsync included) vs zarr's array API
        info = blocks[0]
        events = pool.read_block(info)
        packed = pack_block(events)
        n_hits = int(packed.index_delta.shape[0])
        shard = -(-n_hits // layout.chunk_hits) * layout.chunk_hits

        def write_zarr(where: Path) -> None:
            group = zarr.open_group(LocalStore(str(where)), mode="w")
            columns = (packed.counts, packed.index_delta, packed.charge)
            for column, values in zip(COLUMNS, columns, strict=True):
                size = values.dtype.itemsize
                codecs = [
                    BloscCodec(
                        cname=layout.compression.cname,
                        clevel=layout.compression.clevel,
                        shuffle=layout.compression.shuffle if size > 1 else "noshuffle",
                        typesize=size,
                    ),
                    Crc32cCodec(),
                ]
                sharding = {} if column == "counts" else {"shards": (shard,)}
                chunks = (len(values),) if column == "counts" else (layout.chunk_hits,)
                array = group.create_array(
                    column,
                    shape=values.shape,
                    dtype=values.dtype,
                    chunks=chunks,
                    compressors=codecs,
                    fill_value=0,
                    **sharding,
                )
                array[:] = values
            group.attrs["bgcache"] = {"kind": "block", "n_events": len(events)}

        t_b, t_z = [], []
        for rep in range(3):
            target = create_or_open_pool(tmp / f"writer-{rep}", pool.content, layout)
            target.ensure_stream(info.seed)
            t0 = time.perf_counter()
            target.write_block(info.seed, 0, events)
            t_b.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            write_zarr(tmp / f"zarr-writer-{rep}")
            t_z.append(time.perf_counter() - t0)
        for column in COLUMNS:  # the same codecs and sharding: the same chunk bytes
            ours = (tmp / "writer-0" / info.path / column / "c" / "0").read_bytes()
            theirs = (tmp / "zarr-writer-0" / column / "c" / "0").read_bytes()
            assert ours == theirs, f"{column}: zarr wrote other bytes"
        out["write a block, per event"] = (min(t_b) / len(events), min(t_z) / len(events))

        # the store layer alone: one ranged read of 100 kB of a shard (a window's column)
        keys = [column_key(b.path, c) for b in blocks for c in ("index", "charge")]
        ranges = [(k, off) for k in keys for off in range(0, 300_000, 100_000)]
        out["store only: a ranged read of 100 kB (LocalStore)"] = ranged_read_times(
            pool.storage, store, ranges, 100_000, 5
        )

        # bgcache's reader with zarr's LocalStore under it (reads; listings stay os.scandir)
        zarr_storage = ZarrLocalStorage(pool_path)
        through_zarr = Pool(zarr_storage, read_root_record(zarr_storage))
        for pos in range(n):
            assert through_zarr.event(pos) == pool.event(pos)  # the same events; caches warm
        out["reader on zarr's LocalStore: one random event (median)"] = paired_medians(
            positions, pool.event, through_zarr.event
        )

        def blocks_through_zarr() -> int:
            fresh = Pool(zarr_storage, read_root_record(zarr_storage))
            return sum(len(events) for _, events in fresh.blocks())

        assert blocks_through_zarr() == n
        out["reader on zarr's LocalStore: Pool.blocks(), per event"] = (
            best_time(blocks_bgcache, 3) / n,
            best_time(blocks_through_zarr, 3) / n,
        )
    return out


def report_storage(pool_path: Path, n: int) -> None:
    s = storage(pool_path, 7, n)
    pool_size = s["pool_bytes_per_event"]
    print(f"\n## Storage: {n} synthetic events, {s['hits_per_event']:.0f} hits/event\n")
    print("| encoding | kB/event | pool / this |")
    print("|---|---|---|")
    print(f"| **pool on disk** (all objects of its blocks) | **{pool_size / 1e3:.1f}** | 1.000 |")
    for name, size in sorted(s["codecs"], key=lambda r: r[1]):
        print(f"| {name} (in memory) | {size / 1e3:.1f} | {pool_size / size:.3f} |")
    bound = s["bound"]
    print(f"| independent-pixel information bound | {bound / 1e3:.1f} | {pool_size / bound:.3f} |")
    excess = pool_size / s["best"] - 1
    print(f"\npool vs best codec ({s['best_name']}): {100 * excess:+.1f} % (goal: within 5 %)")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1024, help="synthetic pool size")
    ap.add_argument("--build-events", type=int, default=2000, help="events of the build-speed runs")
    ap.add_argument("--gan", nargs="*", default=["convnet"], help="GAN models for the overhead run")
    ap.add_argument("--gan-events", type=int, default=8)
    ap.add_argument(
        "--parts",
        default="storage,read,random,zarr,build,gan",
        help="comma-separated subset of: storage, read, random, zarr, build, gan",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pool_path = tmp / "pool"
        if parts & {"storage", "read", "random", "zarr"}:
            build_pool(pool_path, model="synthetic", seed=7, events=args.events)
        if "storage" in parts:
            report_storage(pool_path, args.events)
        if "read" in parts:
            q = sequential(pool_path)
            print("\n## Sequential read, one core\n")
            print(f"pool.blocks() -> events: {q['pool_events_per_s']:.0f} events/s (goal >= 1,500)")
            print(f"in-memory decode of the same bytes: {q['memory_events_per_s']:.0f} events/s")
            print(f"pool / in-memory time: {q['ratio']:.2f}x (goal <= 1.5x)")
        if "random" in parts:
            ra = random_access(pool_path)
            print("\n## Random access to one event, one core\n")
            print(
                f"warm: median {ra['warm_median_ms']:.2f} ms, p95 {ra['warm_p95_ms']:.2f} ms "
                "(goal <= 3 ms)"
            )
            print(f"open_pool + one event: median {ra['open_and_read_median_ms']:.2f} ms")
        if "zarr" in parts:
            z = zarr_api(pool_path, tmp)
            print("\n## bgcache's reader and writer against zarr-python's array API, one core\n")
            print("| operation | bgcache | zarr-python | zarr / bgcache |")
            print("|---|---|---|---|")
            for label, (ours, theirs) in z.items():
                print(
                    f"| {label} | {1e3 * ours:.3f} ms | {1e3 * theirs:.3f} ms | {theirs / ours:.2f}x |"
                )
        if "build" in parts:
            b = build_speed(tmp, args.build_events)
            print(f"\n## Synthetic build, {args.build_events} events\n")
            print(f"1 process: {b['events_per_s_1']:.0f} events/s ({b['seconds_1']:.1f} s)")
            print(
                f"2 worker processes: {b['events_per_s_2']:.0f} events/s ({b['seconds_2']:.1f} s) "
                "(goal >= 300)"
            )
            print(f"generation alone, 1 process: {b['generate_only_events_per_s_1']:.0f} events/s")
        for model in args.gan if "gan" in parts else []:
            g = gan_overhead(tmp, model, args.gan_events)
            print(f"\n## {model}: storing overhead, {g['events']} events, 1 thread, best of 2\n")
            print(
                f"generate only: {g['generate_only_s']:.2f} s; "
                f"build into a pool: {g['build_s']:.2f} s"
            )
            print(
                f"overhead vs generating only: {100 * g['overhead']:+.2f} % of the build's wall "
                "time (goal <= 3 %)"
            )
            print(
                f"within the build: {100 * g['overhead_in_run']:.2f} % of its wall time is not "
                f"generation; {g['bytes_per_event'] / 1e3:.1f} kB/event"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
