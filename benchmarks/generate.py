"""Generation speed: seconds per event of each GAN model in fp32 plain, fp32 fast, bf16 and
bf16-mixed at 1 and 2 threads, the occupancy shift of the reduced precisions on the timed
keys, what "auto" picks here, optionally channels_last and torch.compile (--extras), and
synthetic events/s on one core. The fidelity gate's table is benchmarks/fidelity.py's.

Run:  python benchmarks/generate.py                 (all models, ~15 min on 2 cores)
      python benchmarks/generate.py --models convnet --threads 2 --events 2 --extras
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


def time_events(
    gen: Any, keys: list[tuple[int, int]], warm: tuple[int, int], hits: list[int] | None = None
) -> list[float]:
    """Seconds of each key's event after one warm-up event (their hit counts into ``hits``)."""
    gen.events([warm])
    out = []
    for key in keys:
        t0 = time.perf_counter()
        (event,) = gen.events([key])
        out.append(time.perf_counter() - t0)
        if hits is not None:
            hits.append(event.n_hits)
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


#: The configurations timed per model and thread count: (label, optimize, precision).
CONFIGS = (
    ("plain", False, "fp32"),
    ("fast", True, "fp32"),
    ("bf16", True, "bf16"),
    ("bf16-mixed", True, "bf16-mixed"),
)


def cpu_flags() -> str:
    """The CPU's matrix/vector features that decide the precision (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    want = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    return " ".join(f for f in want if f in flags) or "none of avx2/avx512/amx"


def time_extras(name: str, ck: Path, keys: list[tuple[int, int]], threads: int) -> dict[str, float]:
    """What else the hardware offers, measured on the fast path (kept only where it pays):
    fp32 in channels_last (NHWC) and torch.compile of fp32 and of bf16-mixed."""
    import torch

    from bgcache.models import load_model

    out: dict[str, float] = {}
    gen = load_model(name, ck, nintra=threads)
    gen.net = gen.net.to(memory_format=torch.channels_last)
    out["fp32_channels_last"] = statistics.median(time_events(gen, keys, warm=(99, 0)))
    for prec in ("fp32", "bf16-mixed"):
        gen = load_model(name, ck, nintra=threads, precision=prec)
        t0 = time.perf_counter()
        gen.net = torch.compile(gen.net, dynamic=False)
        gen.events([(98, 0)])  # compiles
        out[f"{prec}_compile_s"] = time.perf_counter() - t0
        out[f"{prec}_compiled"] = statistics.median(time_events(gen, keys, warm=(99, 0)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["convnet", "resnet", "ieagan"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--events", type=int, default=2, help="timed events per configuration")
    ap.add_argument(
        "--configs",
        nargs="+",
        default=[c[0] for c in CONFIGS],
        choices=[c[0] for c in CONFIGS],
        help="configurations to time",
    )
    ap.add_argument(
        "--extras",
        action="store_true",
        help="also time fp32 channels_last and torch.compile (needs a C++ compiler; minutes)",
    )
    ap.add_argument(
        "--checkpoint-dir", type=Path, help="reuse demo checkpoints <model>.pt from here"
    )
    ap.add_argument("--synthetic-events", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="write raw results here")
    args = ap.parse_args()

    import torch

    from bgcache.models import load_model
    from bgcache.models._torch import device_capabilities
    from bgcache.models.checkpoint import init_checkpoint

    caps = device_capabilities("cpu")
    results: dict[str, Any] = {
        "machine": machine(),
        "cpu_flags": cpu_flags(),
        "device_class": caps.device_class,
        "torch": torch.__version__,
        "gan": [],
    }
    print(
        f"# machine: {results['machine']}; flags {results['cpu_flags']}; "
        f"{caps.device_class} ({caps.description}); torch {torch.__version__}",
        file=sys.stderr,
    )
    results["synthetic"] = bench_synthetic(args.synthetic_events)
    print(
        f"synthetic: {results['synthetic']['events_per_s']:.0f} events/s (1 core)", file=sys.stderr
    )

    tmp = tempfile.TemporaryDirectory()
    ckdir = args.checkpoint_dir or Path(tmp.name)
    keys = [(2024, i) for i in range(args.events)]
    configs = [c for c in CONFIGS if c[0] in args.configs]
    for name in args.models:
        ck = ckdir / f"{name}.pt"
        if not ck.exists():
            init_checkpoint(name, ck, seed=0)
        for threads in args.threads:
            row: dict[str, Any] = {"model": name, "threads": threads}
            hits: dict[str, int] = {}
            for label, optimize, prec in configs:
                gen = load_model(name, ck, optimize=optimize, nintra=threads, precision=prec)
                counts: list[int] = []
                ts = time_events(gen, keys, warm=(99, 0), hits=counts)
                row[label] = statistics.median(ts)
                hits[label] = sum(counts)
                print(
                    f"{name} {label} threads={threads}: {row[label]:.2f} s/event", file=sys.stderr
                )
            base = hits.get("fast") or hits.get("plain")
            for label in ("bf16", "bf16-mixed"):
                if label in hits and base:
                    row[f"{label}_hits_shift"] = hits[label] / base - 1
            row["auto"] = load_model(name, ck, nintra=threads, precision="auto").precision
            if args.extras and threads == max(args.threads):
                row.update(time_extras(name, ck, keys, threads))
                print(f"{name} extras: {row}", file=sys.stderr)
            results["gan"].append(row)

    print(
        f"\nMachine: {results['machine']}; CPU flags: {results['cpu_flags']}; device class "
        f"{results['device_class']}; torch {results['torch']}; {args.events} timed events each\n"
    )
    labels = [c[0] for c in configs]
    head = [f"{lb} s/event" for lb in labels]
    ratios = [("fast", "bf16-mixed"), ("plain", "bf16-mixed")]
    ratios = [(a, b) for a, b in ratios if a in labels and b in labels]
    head += [f"{a} / {b}" for a, b in ratios] + ["bf16 hits", "bf16-mixed hits", "auto"]
    print("| model | threads | " + " | ".join(head) + " |")
    print("|---|---|" + "---|" * len(head))
    for row in results["gan"]:
        cells = [f"{row[lb]:.2f}" for lb in labels]
        cells += [f"{row[a] / row[b]:.1f}x" for a, b in ratios]
        cells += [
            f"{100 * row[k]:+.2f} %" if k in row else ""
            for k in ("bf16_hits_shift", "bf16-mixed_hits_shift")
        ]
        cells.append(row["auto"])
        print(f"| {row['model']} | {row['threads']} | " + " | ".join(cells) + " |")
    extras = [r for r in results["gan"] if "fp32_channels_last" in r]
    if extras:
        print(
            "\n| model | threads | fp32 fast | fp32 channels_last | fp32 compiled (compile s) "
            "| bf16-mixed | bf16-mixed compiled (compile s) |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in extras:
            print(
                f"| {r['model']} | {r['threads']} | {r.get('fast', float('nan')):.2f} | "
                f"{r['fp32_channels_last']:.2f} | {r['fp32_compiled']:.2f} ({r['fp32_compile_s']:.0f}) | "
                f"{r.get('bf16-mixed', float('nan')):.2f} | "
                f"{r['bf16-mixed_compiled']:.2f} ({r['bf16-mixed_compile_s']:.0f}) |"
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
