"""Overlay draws from a pool on an S3-compatible endpoint vs the same pool on local disk.

Starts a moto S3 server on 127.0.0.1 (``pip install 'moto[server]'``), builds the same
synthetic pool on local disk and in a bucket, and times ``PoolOverlay.next_event()`` over
the whole pool for several prefetch depths. moto is a local, in-process-Python server, so
the figures show the cost of going through the S3 protocol (one GET per shard index and
inner chunk, HTTP and boto3 overheads), not a real network's latency.

Run:  python benchmarks/s3.py [--events 512] [--prefetch 0 1 2 4 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
