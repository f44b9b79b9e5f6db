"""Generation speed: seconds per event of each GAN model, plain vs fast path, at 1 and 2
threads, reduced precision (speed and fidelity), and synthetic events/s on one core.

Run:  python benchmarks/generate.py                 (all models, ~10 min on 2 cores)
      python benchmarks/generate.py --models convnet --threads 2 --events 2
Prints a markdown table (paste into docs/performance.md) and, with --json, raw figures.
Each configuration is timed after one warm-up event; ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def time_events(gen: Any, keys: list[tuple[int, int]], warm: tuple[int, int]) -> list[float]:
    gen.events([warm])
    out = []
    for key in keys:
        t0 = time.perf_counter()
        gen.events([key])
        out.append(time.perf_counter() - t0)
    return out


def bench_synthetic(n: int) -> dict[str, float]:
    from bgcache.models import load_model

    gen = load_model("synthetic")
    gen.events([(0, i) for i in range(20)])
    t0 = time.perf_counter()
    evs = gen.events([(1, i) for i in range(n)])
    dt = time.perf_counter() - t0
    return {
        "events": n,
        "seconds": dt,
        "events_per_s": n / dt,
        "hits_per_event": float(np.mean([e.n_hits for e in evs])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["convnet", "resnet", "ieagan"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--events", type=int, default=1, help="timed events per configuration")
    ap.add_argument(
        "--precision", nargs="*", default=["bf16"], help="reduced precisions to try (2 threads)"
    )
    ap.add_argument(
        "--checkpoint-dir", type=Path, help="reuse demo checkpoints <model>.pt from here"
    )
    ap.add_argument("--synthetic-events", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="write raw results here")
    args = ap.parse_args()

    import torch

    from bgcache.models import load_model
    from bgcache.models.checkpoint import init_checkpoint

    results: dict[str, Any] = {
        "machine": machine(),
        "torch": torch.__version__,
        "gan": [],
        "precision": [],
    }
    print(f"# machine: {results['machine']}; torch {torch.__version__}", file=sys.stderr)
    results["synthetic"] = bench_synthetic(args.synthetic_events)
    print(
        f"synthetic: {results['synthetic']['events_per_s']:.0f} events/s (1 core)", file=sys.stderr
    )

    tmp = tempfile.TemporaryDirectory()
    ckdir = args.checkpoint_dir or Path(tmp.name)
    keys = [(2024, i) for i in range(args.events)]
    for name in args.models:
        ck = ckdir / f"{name}.pt"
        if not ck.exists():
            init_checkpoint(name, ck, seed=0)
        row: dict[str, Any] = {"model": name}
        for threads in args.threads:
            for optimize in (False, True):
                gen = load_model(name, ck, optimize=optimize, nintra=threads)
                ts = time_events(gen, keys, warm=(99, 0))
                row[f"{'fast' if optimize else 'plain'}_{threads}t"] = statistics.median(ts)
                print(
                    f"{name} optimize={optimize} threads={threads}: {statistics.median(ts):.2f} s/event",
                    file=sys.stderr,
                )
            row[f"speedup_{threads}t"] = row[f"plain_{threads}t"] / row[f"fast_{threads}t"]
        results["gan"].append(row)
        for prec in args.precision:
            ref = load_model(name, ck, optimize=True, nintra=max(args.threads))
            low = load_model(name, ck, optimize=True, nintra=max(args.threads), precision=prec)
            t_ref = statistics.median(time_events(ref, keys, warm=(99, 0)))
            t_low = statistics.median(time_events(low, keys, warm=(99, 0)))
            a = np.stack([ref.images(ref.latents(k)) for k in keys])
            b = np.stack([low.images(low.latents(k)) for k in keys])
            hits_a, hits_b = a > 0, b > 0
            results["precision"].append(
                {
                    "model": name,
                    "precision": prec,
                    "threads": max(args.threads),
                    "fp32_s": t_ref,
                    "low_s": t_low,
                    "speedup": t_ref / t_low,
                    "pixels_differ": float((a != b).mean()),
                    "fired_pixels_differ": float((a != b)[hits_a | hits_b].mean()),
                    "hit_set_differ": float((hits_a != hits_b).sum() / max(hits_a.sum(), 1)),
                }
            )
            print(f"{name} {prec}: {t_low:.2f} s/event vs fp32 {t_ref:.2f}", file=sys.stderr)

    print(f"\nMachine: {results['machine']}; torch {results['torch']}\n")
    cols = [c for t in args.threads for c in (f"plain_{t}t", f"fast_{t}t", f"speedup_{t}t")]
    print("| model | " + " | ".join(c.replace("_", " ") for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for row in results["gan"]:
        cells = [f"{row[c]:.2f}x" if c.startswith("speedup") else f"{row[c]:.2f} s" for c in cols]
        print(f"| {row['model']} | " + " | ".join(cells) + " |")
    if results["precision"]:
        print(
            "\n| model | precision | threads | fp32 s/event | reduced s/event | speedup | pixels differ | fired pixels differ | hit set differs |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results["precision"]:
            print(
                f"| {r['model']} | {r['precision']} | {r['threads']} | {r['fp32_s']:.2f} | {r['low_s']:.2f} | "
                f"{r['speedup']:.2f}x | {r['pixels_differ']:.2e} | {r['fired_pixels_differ']:.2%} | {r['hit_set_differ']:.2%} |"
            )
    s = results["synthetic"]
    print(
        f"\nsynthetic: {s['events_per_s']:.0f} events/s on one core ({s['hits_per_event']:.0f} hits/event, {s['events']} events)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
