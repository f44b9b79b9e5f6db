"""Where bf16 moves the output: the occupancy shift (against fp32, on the same keys) and the
time of each stage of a fast network run alone in bfloat16, as bf16-mixed runs it (float32
biases, the weights' mean rounding shift added back from a calibration) and naively (the
bias rounded to bf16 too, nothing added back), then bf16-mixed's stage choice
(bgcache.models.precision.MIXED_FP32_STAGES) and the whole network in bf16.

This is the measurement behind MIXED_FP32_STAGES; the fidelity gate over 200 events is
benchmarks/fidelity.py's.

Run:  python benchmarks/precision.py --models convnet --events 4
      python benchmarks/precision.py --checkpoint-dir /tmp/ck      (all models, ~10 min)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from generate import cpu_flags, machine


def time_stages(
    gen: Any,
    base: Any,
    means: Any,
    keys: list[tuple[int, int]],
    dtypes: dict[str, Any],
    naive: bool,
) -> tuple[float, float]:
    """Hits of ``keys`` and s/event with a fresh copy of the float32 network ``base`` whose
    stages run in ``dtypes`` (``naive``: biases rounded to bf16, no calibration)."""
    net = copy.deepcopy(base)
    if naive:  # the bias rounded as a plain bf16 network rounds it; no calibration
        for _, mod in net._convs():
            mod.bias.data = mod.bias.data.bfloat16().float()
    net.set_stage_dtypes(dtypes, None if naive else means)
    gen.net = net
    gen.events(keys[:1])
    t0 = time.perf_counter()
    n = sum(e.n_hits for e in gen.events(keys))
    return n, (time.perf_counter() - t0) / len(keys)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["convnet", "resnet", "ieagan"])
    ap.add_argument("--events", type=int, default=4, help="events (keys) per configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--naive", action="store_true", help="also each stage with its bias rounded")
    ap.add_argument(
        "--keep",
        nargs="*",
        default=[],
        metavar="STAGES",
        help="other sets of float32 stages to try, comma-separated (e.g. fc,block5,last)",
    )
    ap.add_argument("--no-single", action="store_true", help="skip the one-stage rows")
    ap.add_argument(
        "--checkpoint-dir", type=Path, help="reuse demo checkpoints <model>.pt from here"
    )
    args = ap.parse_args()

    import torch

    from bgcache.models import load_model
    from bgcache.models._torch import device_capabilities
    from bgcache.models.checkpoint import init_checkpoint
    from bgcache.models.precision import MIXED_FP32_STAGES

    caps = device_capabilities("cpu")
    print(
        f"Machine: {machine()}; CPU flags: {cpu_flags()}; {caps.device_class}; torch {torch.__version__}"
    )
    print(f"{args.events} keys per configuration, {args.threads} threads\n")
    tmp = tempfile.TemporaryDirectory()
    ckdir = args.checkpoint_dir or Path(tmp.name)
    keys = [(77, i) for i in range(args.events)]
    for name in args.models:
        ck = ckdir / f"{name}.pt"
        if not ck.exists():
            init_checkpoint(name, ck, seed=0)
        gen = load_model(name, ck, nintra=args.threads)  # fp32 fast path
        base = gen.net.to(memory_format=torch.channels_last)  # as bf16-mixed runs
        means = gen.calibration_means(base)

        def run(dtypes: dict[str, Any], naive: bool = False) -> tuple[float, float]:
            return time_stages(gen, base, means, keys, dtypes, naive)  # noqa: B023

        ref, t_ref = run({})
        print(
            f"| {name}: stage in bf16 | hits vs fp32 | s/event |"
            + (" naive (bias rounded) |" if args.naive else "")
        )
        print("|---|---|---|" + ("---|" if args.naive else ""))
        print(f"| none (fp32, NHWC) | | {t_ref:.2f} |" + (" |" if args.naive else ""))
        bf = torch.bfloat16
        for stage in () if args.no_single else base.STAGES:
            n, t = run({stage: bf})
            extra = ""
            if args.naive:
                n2, _ = run({stage: bf}, naive=True)
                extra = f" {100 * (n2 / ref - 1):+.3f} % |"
            print(f"| {stage} | {100 * (n / ref - 1):+.3f} % | {t:.2f} |{extra}", flush=True)
        mixed = {s: bf for s in base.STAGES if s not in MIXED_FP32_STAGES[name]}
        n, t = run(mixed)
        kept = ", ".join(MIXED_FP32_STAGES[name])
        print(
            f"| bf16-mixed (all but {kept}) | {100 * (n / ref - 1):+.3f} % | {t:.2f} |"
            + (" |" if args.naive else "")
        )
        for keep in args.keep:
            if not set(keep.split(",")) <= set(base.STAGES):
                continue  # another model's stages
            n, t = run({s: bf for s in base.STAGES if s not in keep.split(",")})
            print(
                f"| all but {keep.replace(',', ', ')} | {100 * (n / ref - 1):+.3f} % | {t:.2f} |"
                + (" |" if args.naive else "")
            )
        n, t = run(dict.fromkeys(base.STAGES, bf))
        print(
            f"| every stage | {100 * (n / ref - 1):+.3f} % | {t:.2f} |"
            + (" |" if args.naive else "")
        )
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
