"""Overlay benchmarks: draw throughput from a pool vs generating on the fly; import cost.

1. ``PoolOverlay.next_event()`` over a synthetic pool with prefetch (a background thread
   decodes blocks ahead), and without, in events/s; pinned to one core and with both.
2. On-the-fly generation with each GAN model (``optimize=True``, one thread, demo
   checkpoints), seconds per event, and the ratio to the pool draw, measured in one run.
3. Import time and resident memory of a pool-only overlay process (a fresh interpreter:
   ``import bgcache``, open a pool, draw 200 events), and whether torch was imported.

Run:  python benchmarks/overlay.py [--events 2048] [--gan convnet resnet ieagan] [--gan-events 2]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from numcodecs import blosc

from bgcache.build import build_pool
from bgcache.models import load_model
from bgcache.overlay import PoolOverlay


def _machine() -> str:
    spec = importlib.util.spec_from_file_location(
        "bench_generate", Path(__file__).with_name("generate.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return str(module.machine())


@contextlib.contextmanager
def cores(n: int) -> Iterator[None]:
    """Run on ``n`` CPUs (Blosc with one thread)."""
    before = os.sched_getaffinity(0)
    threads = blosc.get_nthreads()
    os.sched_setaffinity(0, set(sorted(before)[-n:]))
    blosc.set_nthreads(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
        blosc.set_nthreads(threads)


def draw_rate(pool: Path, n: int, prefetch: int, n_cores: int, threads: int) -> float:
    with cores(n_cores):
        overlay = PoolOverlay(
            pool, seed=1, prefetch=prefetch, prefetch_threads=threads, on_exhausted="error"
        )
        overlay.next_event()  # the first block
        t0 = time.perf_counter()
        for _ in range(n - 1):
            overlay.next_event()
        dt = time.perf_counter() - t0
        overlay.close()
    return (n - 1) / dt


def gan_seconds(tmp: Path, model: str, n: int, optimize: bool = True) -> float:
    from bgcache.models.checkpoint import init_checkpoint

    ckpt = tmp / f"{model}.pt"
    if not ckpt.exists():
        init_checkpoint(model, ckpt)
    gen = load_model(model, ckpt, optimize=optimize, nintra=1)
    gen.events([(0, 99)])
    t0 = time.perf_counter()
    for i in range(n):
        gen.events([(0, i)])
    return (time.perf_counter() - t0) / n


PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
import bgcache
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
overlay = bgcache.PoolOverlay(sys.argv[1], on_exhausted="reuse")
t_open = time.perf_counter() - t0
for _ in range(200):
    overlay.next_event()
overlay.close()
rss = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        rss = int(line.split()[1]) * 1024
print(json.dumps({"import_s": t_import, "open_s": t_open, "peak_rss": rss,
                  "torch": "torch" in sys.modules}))
"""


def pool_only_process(pool: Path) -> dict[str, Any]:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(pool)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda r: r["import_s"])
    return {**best, "peak_rss": max(r["peak_rss"] for r in runs)}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=2048)
    ap.add_argument("--gan", nargs="*", default=["convnet", "resnet", "ieagan"])
    ap.add_argument("--gan-events", type=int, default=2)
    ap.add_argument(
        "--plain",
        nargs="*",
        default=["convnet"],
        help="also time the plain forward pass (as basf2 runs it)",
    )
    args = ap.parse_args()
    print(f"machine: {_machine()}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pool = tmp / "pool"
        build_pool(pool, model="synthetic", events=args.events)
        rates = {}
        for label, prefetch, n_cores, threads in (
            ("prefetch 2, 2 decode threads (default), 2 cores", 2, 2, 2),
            ("prefetch 2, 1 decode thread, 2 cores", 2, 2, 1),
            ("prefetch 2, 2 decode threads, 1 core", 2, 1, 2),
            ("no prefetch, 1 core", 0, 1, 1),
        ):
            draw_rate(pool, min(args.events, 256), prefetch, n_cores, threads)  # file cache
            rates[label] = max(
                draw_rate(pool, args.events, prefetch, n_cores, threads) for _ in range(2)
            )
        print(f"\n## Draw throughput, {args.events} synthetic events\n")
        print("| overlay | events/s |")
        print("|---|---|")
        for label, rate in rates.items():
            print(f"| {label} | {rate:,.0f} |")
        best = rates["prefetch 2, 2 decode threads (default), 2 cores"]
        print("\n(goal >= 1,500 events/s with prefetch)")
        if args.gan:
            print("\n## On-the-fly generation, 1 thread\n")
            print("| model | path | s/event | pool draw (default prefetch, 2 cores) is faster by |")
            print("|---|---|---|---|")
            for model in args.gan:
                sec = gan_seconds(tmp, model, args.gan_events)
                print(f"| {model} | fast (optimize=True) | {sec:.2f} | {sec * best:,.0f}x |")
            for model in args.plain:
                sec = gan_seconds(tmp, model, 1, optimize=False)
                print(f"| {model} | plain (optimize=False) | {sec:.2f} | {sec * best:,.0f}x |")
        probe = pool_only_process(pool)
        print("\n## Pool-only overlay process\n")
        print(
            f"import bgcache: {1e3 * probe['import_s']:.0f} ms; open the overlay: {1e3 * probe['open_s']:.0f} ms"
        )
        print(f"peak RSS after 200 draws: {probe['peak_rss'] / 2**20:.0f} MiB (goal < 150 MB)")
        print(f"torch imported: {probe['torch']} (goal: False)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
