"""Grid storage benchmark: overlay events/s from XRootD and WebDAV servers against local disk.

One run: the same synthetic pool (``--events``, built into each location with the same
keys, so the same bytes) on local disk, on a real ``xrootd`` server (Debian's
``xrootd-server``) and on a real WebDAV server (wsgidav on cheroot, anonymous), both
started on 127.0.0.1 (``tests/grid_servers.py``). The servers run on one core and this
process on the other (where there are two), so the figures are the protocol's cost —
requests, the client library, the server's handling — not a network's latency.

For each location and prefetch setting: ``PoolOverlay.next_event()`` over the whole pool
(best of two passes), and the storage requests per event (every call of the backend's
primitives: stat, list, ranged read, counted during one pass).

Run:  python benchmarks/grid.py [--events 256] [--prefetch 0 2 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from numcodecs import blosc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from basf2_fill import machine  # noqa: E402
from grid_servers import start_webdav, start_xrootd  # noqa: E402

from bgcache.build import build_pool  # noqa: E402
from bgcache.overlay import PoolOverlay  # noqa: E402
from bgcache.store import storage as local_storage  # noqa: E402
from bgcache.store.webdav import WebDAVStorage  # noqa: E402
from bgcache.store.xrootd import XRootDStorage  # noqa: E402

#: The calls counted as requests, per backend class: the local reads and listings (each a
#: system call or two), and each protocol's primitives (each one request to the server).
COUNTED = {
    local_storage.LocalStorage: ("read", "read_range", "children"),
    XRootDStorage: ("_stat", "_list", "_get"),
    WebDAVStorage: ("_stat", "_list", "_get"),
}
CALLS: Counter[str] = Counter()


def count_requests() -> None:
    for cls, names in COUNTED.items():
        for name in names:
            real = getattr(cls, name)

            def counted(
                self: Any, *args: Any, __real: Any = real, __name: str = name, **kw: Any
            ) -> Any:
                CALLS[__name] += 1
                return __real(self, *args, **kw)

            setattr(cls, name, counted)


def overlay_pass(url: str, n: int, prefetch: int) -> float:
    """Seconds for one pass over the pool (every event once), the overlay opened anew."""
    t0 = time.perf_counter()
    with PoolOverlay(url, seed=1, on_exhausted="error", prefetch=prefetch) as overlay:
        for _ in range(n):
            overlay.next_event()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=256)
    ap.add_argument("--prefetch", type=int, nargs="+", default=[0, 2, 8])
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = cores[0], cores[-1]
    blosc.set_nthreads(1)
    base = Path(tempfile.mkdtemp(prefix="bgcache-grid-bench-"))
    base.chmod(0o755)
    procs = []
    try:
        os.sched_setaffinity(0, {server_core})  # the servers inherit it
        xrd, xrd_port, _ = start_xrootd(base / "xrootd")
        dav, dav_port, _ = start_webdav(base / "webdav", anonymous=True)
        procs += [xrd, dav]
        os.sched_setaffinity(0, {client_core})
        print(
            f"machine: {machine()}; servers on core {server_core}, this process on core {client_core}"
        )
        locations = {
            "local disk": str(base / "local"),
            "XRootD (root://)": f"root://127.0.0.1:{xrd_port}//pool",
            "WebDAV (dav://)": f"dav://127.0.0.1:{dav_port}/pool",
        }
        for url in locations.values():
            build_pool(url, model="synthetic", events=args.events, block_events=256)
        count_requests()
        print(f"\n{args.events} synthetic events, blocks of 256, one pass each, 2 decode threads\n")
        print("| location | prefetch | events/s | / local | requests per event |")
        print("|---|---|---|---|---|")
        local_rate: dict[int, float] = {}
        for name, url in locations.items():
            for prefetch in args.prefetch:
                overlay_pass(url, args.events, prefetch)  # warm: page cache, connections
                CALLS.clear()
                seconds = overlay_pass(url, args.events, prefetch)
                requests = sum(CALLS.values()) / args.events
                seconds = min(seconds, overlay_pass(url, args.events, prefetch))
                rate = args.events / seconds
                local_rate.setdefault(prefetch, rate)
                print(
                    f"| {name} | {prefetch} | {rate:,.0f} | {rate / local_rate[prefetch]:.2f} "
                    f"| {requests:.2f} |"
                )
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
