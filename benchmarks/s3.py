"""Overlay draws from a pool on an S3-compatible endpoint vs the same pool on local disk.

Starts a moto S3 server on 127.0.0.1 (``pip install 'moto[server]'``), builds the same
synthetic pool on local disk and in a bucket, and times ``PoolOverlay.next_event()`` over
the whole pool for several prefetch depths. moto is a local, in-process-Python server, so
the figures show the cost of going through the S3 protocol (one GET per shard index and
inner chunk, HTTP and boto3 overheads), not a real network's latency.

Then, where obstore is installed (``pip install obstore``; not a bgcache dependency), the
same windows of 16 events read from the bucket by bgcache's reader (``Pool.read_events``,
boto3) and by zarr-python's array API over zarr's ``ObjectStore`` (obstore's S3 client):
arrays opened and counts read once per block, then ``index[first:last]`` and
``charge[first:last]`` per window, one core, the pool read once.

Last, whether each store still reads in a child process forked after the parent has read
through it (basf2's multiprocessing, torch's DataLoader workers and ``bgcache build
--workers`` fork after the pool is open): the child reads through a store opened anew
after the fork, within a 10 s deadline, and the script prints the time or ``hangs``.

Run:  python benchmarks/s3.py [--events 512] [--prefetch 0 1 2 4 8]
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _timing import best_time, ranged_read_times

from bgcache.build import build_pool
from bgcache.overlay import PoolOverlay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def draw_rate(url: str, n: int, prefetch: int) -> float:
    overlay = PoolOverlay(url, prefetch=prefetch, on_exhausted="error")
    overlay.next_event()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        overlay.next_event()
    dt = time.perf_counter() - t0
    overlay.close()
    return (n - 1) / dt


def zarr_s3_store(bucket: str, prefix: str, endpoint: str) -> Any:
    """zarr's ObjectStore on obstore's S3 client, read-only, at ``endpoint`` (plain HTTP)."""
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    s3 = S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint,
        region="us-east-1",
        client_options={"allow_http": True},
    )
    return ObjectStore(s3, read_only=True)


def windows_bgcache(url: str) -> int:
    from bgcache.store import open_pool

    pool = open_pool(url)
    count = 0
    for info in pool.block_list:
        for lo in range(0, info.n_events, 16):
            count += len(pool.read_events(info, lo, min(lo + 16, info.n_events)))
    return count


def windows_zarr(bucket: str, prefix: str, endpoint: str) -> int:
    import zarr

    from bgcache.store import open_pool
    from bgcache.store.columns import PackedBlock, unpack_block

    pool = open_pool(f"s3://{bucket}/{prefix}")  # for the block list only
    store = zarr_s3_store(bucket, prefix, endpoint)
    count = 0
    for info in pool.block_list:
        arrays = {
            c: zarr.open_array(store, path=f"{info.path}/{c}", mode="r")
            for c in ("counts", "index", "charge")
        }
        counts = arrays["counts"][:]
        offsets = [0, *counts.cumsum().tolist()]
        for lo in range(0, info.n_events, 16):
            hi = min(lo + 16, info.n_events)
            first, last = offsets[lo], offsets[hi]
            packed = PackedBlock(
                counts[lo:hi], arrays["index"][first:last], arrays["charge"][first:last]
            )
            count += len(unpack_block(packed))
    return count


def ranged_reads(url: str, bucket: str, prefix: str, endpoint: str) -> tuple[float, float]:
    """Seconds per ranged GET of 100 kB of a shard: bgcache's S3 storage vs zarr ObjectStore."""
    from bgcache.store import open_pool
    from bgcache.store.format import column_key

    pool = open_pool(url)
    ranges = [
        (column_key(b.path, c), off)
        for b in pool.block_list
        for c in ("index", "charge")
        for off in range(0, 300_000, 100_000)
    ]
    store = zarr_s3_store(bucket, prefix, endpoint)
    return ranged_read_times(pool.storage, store, ranges, 100_000, 3)


def read_after_fork(read: Any) -> str:
    """Run ``read()`` once here, then in a forked child; the child's time, or ``hangs``."""
    read()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the time of one read, or exit by itself at the deadline
        os.close(r)
        faulthandler.dump_traceback_later(10, exit=True, file=Path(os.devnull).open("w"))  # noqa: SIM115
        t0 = time.perf_counter()
        read()
        os.write(w, f"{1e3 * (time.perf_counter() - t0):.1f} ms".encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as pipe:
        return pipe.read().decode() or "hangs (stopped after 10 s)"


def fork_probe(url: str, bucket: str, prefix: str, endpoint: str) -> list[tuple[str, str]]:
    """A pool's root document read in a child forked after the parent read it."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    from bgcache.store import open_pool

    def ours() -> None:
        assert open_pool(url).storage.read("zarr.json")

    def zarrs() -> None:
        store = zarr_s3_store(bucket, prefix, endpoint)
        assert sync(store.get("zarr.json", default_buffer_prototype()))

    return [
        ("bgcache (boto3)", read_after_fork(ours)),
        ("zarr ObjectStore (obstore)", read_after_fork(zarrs)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=512)
    ap.add_argument("--prefetch", type=int, nargs="*", default=[0, 1, 2, 4, 8])
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        import boto3

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3").create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as tmp:
            local = str(Path(tmp) / "pool")
            remote = "s3://bench/pool"
            for url in (local, remote):
                build_pool(url, model="synthetic", events=args.events)
            print(
                f"## Overlay draw, {args.events} synthetic events, local disk vs S3 (moto on 127.0.0.1)\n"
            )
            print("| prefetch | local events/s | S3 events/s | S3 / local |")
            print("|---|---|---|---|")
            for prefetch in args.prefetch:
                a = max(draw_rate(local, args.events, prefetch) for _ in range(2))
                b = max(draw_rate(remote, args.events, prefetch) for _ in range(2))
                print(f"| {prefetch} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
            try:
                import obstore  # noqa: F401
            except ImportError:
                print("\nobstore is not installed: no zarr-python comparison on S3")
            else:
                endpoint = os.environ["AWS_ENDPOINT_URL"]
                cpu = max(os.sched_getaffinity(0))
                before = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {cpu})
                try:
                    rows = []
                    for label, fn in (
                        ("bgcache (Pool.read_events, boto3)", lambda: windows_bgcache(remote)),
                        (
                            "zarr-python (array API, ObjectStore/obstore)",
                            lambda: windows_zarr("bench", "pool", endpoint),
                        ),
                    ):
                        assert fn() == args.events
                        rows.append((label, args.events / best_time(fn, 2)))
                finally:
                    os.sched_setaffinity(0, before)
                print("\n## Windows of 16 events from S3, one core\n")
                print("| reader | events/s | vs bgcache |")
                print("|---|---|---|")
                for label, rate in rows:
                    print(f"| {label} | {rate:,.0f} | {rate / rows[0][1]:.2f}x |")
                ours, theirs = ranged_reads(remote, "bench", "pool", endpoint)
                print(
                    f"\nstore only, one ranged GET of 100 kB: bgcache (boto3) {1e3 * ours:.2f} ms, "
                    f"zarr ObjectStore (obstore) {1e3 * theirs:.2f} ms ({theirs / ours:.2f}x)"
                )
                print("\n## One read in a child forked after the parent read\n")
                print("| store | child's read |")
                print("|---|---|")
                for label, outcome in fork_probe(remote, "bench", "pool", endpoint):
                    print(f"| {label} | {outcome} |")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
