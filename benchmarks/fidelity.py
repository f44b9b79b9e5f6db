"""The fidelity gate of each GAN model and reduced precision (docs/models.md, "The fidelity
gate"): pools of the same keys in fp32 and in each precision are built (or completed: they
are kept in --dir, so a rerun resumes), then judged by bgcache.fidelity.fidelity_gate.
Prints one markdown table with the build speeds beside the gate's figures.

Run:  python benchmarks/fidelity.py --checkpoint-dir /tmp/ck --dir /tmp/gate
      (all models, 200 keys: ~45 min on 2 cores with AMX)
      python benchmarks/fidelity.py --models convnet --events 20       (a quick look)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from generate import cpu_flags, machine


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["convnet", "resnet", "ieagan"])
    ap.add_argument("--precisions", nargs="+", default=["bf16-mixed", "bf16"])
    ap.add_argument("--events", type=int, default=200, help="keys of each pool (the contract: 200)")
    ap.add_argument(
        "--bf16-events", type=int, help="keys of the plain bf16 pools (default --events)"
    )
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--workers", type=int, default=2, help="build processes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dir", type=Path, help="keep the pools here (default: a temporary one)")
    ap.add_argument(
        "--checkpoint-dir", type=Path, help="reuse demo checkpoints <model>.pt from here"
    )
    args = ap.parse_args()

    import torch

    from bgcache import build_pool, open_pool
    from bgcache.fidelity import fidelity_gate
    from bgcache.models._torch import device_capabilities
    from bgcache.models.checkpoint import init_checkpoint

    caps = device_capabilities(args.device)
    tmp = tempfile.TemporaryDirectory()
    root = args.dir or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    ckdir = args.checkpoint_dir or root
    rows: list[dict[str, Any]] = []

    def build(name: str, ck: Path, precision: str, n: int) -> tuple[Path, float | None]:
        path = root / f"{name}-{precision}"
        r = build_pool(
            path, model=name, checkpoint=ck, events=n, seed=args.seed, precision=precision,
            device=args.device, workers=args.workers,
        )  # fmt: skip
        rate = r.events_written / r.seconds if r.events_written else None
        print(
            f"{name} {precision}: {r.events_written} events built, {r.seconds:.0f} s",
            file=sys.stderr,
        )
        return path, rate

    for name in args.models:
        ck = ckdir / f"{name}.pt"
        if not ck.exists():
            init_checkpoint(name, ck, seed=0)
        ref, ref_rate = build(name, ck, "fp32", args.events)
        for precision in args.precisions:
            n = args.bf16_events if precision == "bf16" and args.bf16_events else args.events
            path, rate = build(name, ck, precision, n)
            report = fidelity_gate(open_pool(path), open_pool(ref), events=n)
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "rate": rate,
                    "ref_rate": ref_rate,
                    **report,
                }
            )

    print(
        f"\nMachine: {machine()}; CPU flags: {cpu_flags()}; device {args.device} "
        f"({caps.device_class}: {caps.description}); torch {torch.__version__}; "
        f"builds with {args.workers} processes\n"
    )
    print(
        "| model | precision | keys | mean occupancy | worst sensor | charge KS (fp32 halves) "
        "| cluster size KS (fp32 halves) | compare | gate | events/s (fp32) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = {x["name"]: x for x in r["criteria"]}

        def mark(name: str) -> str:
            return "" if c[name]["passed"] else " **fail**"  # noqa: B023

        occ = c["occupancy"]["text"].split(" against")[0]
        sensor = c["sensors"]["text"].split(" of its")[0].removeprefix("worst ")
        rate = "" if r["rate"] is None else f"{r['rate']:.2f}"
        ref_rate = "" if r["ref_rate"] is None else f" ({r['ref_rate']:.2f})"
        verdict = (
            "compatible"
            if c["compare"]["passed"]
            else c["compare"]["text"].split(" (")[-1].rstrip(")")
        )
        print(
            f"| {r['model']} | {r['precision']} | {r['events']} | {occ}{mark('occupancy')} | {sensor}{mark('sensors')} "
            f"| {c['charge']['value']:.5f} ({c['charge']['limit']:.5f}){mark('charge')} "
            f"| {c['cluster_size']['value']:.5f} ({c['cluster_size']['limit']:.5f}){mark('cluster_size')} "
            f"| {verdict}{mark('compare')} | {'pass' if r['passed'] else 'FAIL'} | {rate}{ref_rate} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
