"""How often ``compare`` calls two samples of one generator different: the p-values of its
tests over many pairs of synthetic samples (other seeds), which should be uniform.

``--pools`` samples of ``--events`` full-size synthetic events each (statistics with
clusters, gathered straight from the generator: no pool on disk, the same statistics
``compare`` gathers), every pair of them compared with
:func:`bgcache.compare.compare_statistics`. Per test: the fraction of pairs below p = 0.05,
0.01 and 0.001 (a calibrated test: 0.05, 0.01, 0.001) and the mean design effect of the
spectra; then how many pairs the global verdict calls "differs" (at most 1.2 % by
Bonferroni). The pairs share samples, so their p-values are not independent: the fractions
scatter more than a binomial's; the disjoint pairs (0, 1), (2, 3), ... are counted apart.

Run:  python benchmarks/compare_calibration.py [--pools 40] [--events 100] [--cpu N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from basf2_fill import machine

from bgcache.compare import QUANTITIES, compare_statistics
from bgcache.models import load_model
from bgcache.stats import PoolStatistics


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pools", type=int, default=40, help="samples (seeds 100, 101, ...)")
    ap.add_argument("--events", type=int, default=100, help="events per sample")
    ap.add_argument("--cpu", type=int, default=None, help="core to run on (default: the last)")
    args = ap.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(f"machine: {machine()}; pinned to core {cpu}")
    gen = load_model("synthetic")
    t0 = time.perf_counter()
    samples = []
    for seed in range(100, 100 + args.pools):
        stats = PoolStatistics(clusters=True)
        for start in range(0, args.events, 25):
            stop = min(args.events, start + 25)
            stats.add_events(gen.events([(seed, i) for i in range(start, stop)]))
        samples.append(stats)
    gathered = time.perf_counter() - t0
    pairs = list(itertools.combinations(range(args.pools), 2))
    p_values: dict[str, list[float]] = {name: [] for name in QUANTITIES}
    design: dict[str, list[float]] = {}
    differs = 0
    disjoint_differs = 0
    for a, b in pairs:
        report = compare_statistics(samples[a], samples[b])
        for name, test in report["tests"].items():
            p_values[name].append(test["p_value"])
            if "design_effect" in test:
                design.setdefault(name, []).append(test["design_effect"])
        if not report["verdict"]["compatible"]:
            differs += 1
            disjoint_differs += a % 2 == 0 and b == a + 1
    print(
        f"\n{args.pools} synthetic samples of {args.events} events (seeds 100..{99 + args.pools}; "
        f"gathered in {gathered:.0f} s), {len(pairs)} pairs\n"
    )
    print("| quantity | p < 0.05 | p < 0.01 | p < 0.001 | mean design effect |")
    print("|---|---|---|---|---|")
    everything = []
    for name, label in QUANTITIES.items():
        p = np.array(p_values[name])
        everything.append(p)
        effect = f"{np.mean(design[name]):.3f}" if name in design else ""
        print(
            f"| {label} | {np.mean(p < 0.05):.3f} | {np.mean(p < 0.01):.3f} | "
            f"{np.mean(p < 0.001):.4f} | {effect} |"
        )
    allp = np.concatenate(everything)
    print(
        f"| all {allp.size} p-values | {np.mean(allp < 0.05):.3f} | {np.mean(allp < 0.01):.3f} "
        f"| {np.mean(allp < 0.001):.4f} | |"
    )
    n_disjoint = args.pools // 2
    print(
        f"\nglobal verdict 'differs': {differs} of {len(pairs)} pairs ({differs / len(pairs):.2%}; "
        f"at most {len(QUANTITIES) * 0.001:.1%} by Bonferroni), {disjoint_differs} of the "
        f"{n_disjoint} disjoint pairs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
