"""The batched GAN build path on a GPU: events/s per model and precision, a scan over
``batch_events`` (events per forward pass), peak GPU memory, the time of hit extraction (also
against numpy on a dense host copy, the path before the GPU build path),
and the fraction of events (and pixels) whose hits differ from the CPU fp32 result; what
``precision="auto"`` picks on the device, and with ``--gate-events N`` the fidelity gate
(bgcache.fidelity) of each reduced precision against fp32 on the device, over N keys (the
contract: 200), so one command fills the GPU tables of docs/performance.md and docs/models.md.

Run:  python benchmarks/gpu.py --gate-events 200                (all models, on cuda)
      python benchmarks/gpu.py --models convnet --batches 1 4 16 --precisions fp32 bf16
      python benchmarks/gpu.py --device cpu --models resnet --batches 1 2 --events 2
Prints a markdown table (paste into docs/performance.md) and, with --json, raw figures.
Every configuration is timed after one warm-up pass; the CPU reference events for the
fidelity columns are computed once per model (``--reference-events`` of them, fp32, one
event per pass). With ``--device cpu`` the same code path runs on the CPU (a check of the
script, or a CPU batch scan); the fidelity columns then compare the CPU with itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from generate import machine


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"CPU: {machine()}, torch {torch.__version__}"


def fidelity(reference: list[Any], events: list[Any]) -> tuple[float, float]:
    """Fraction of events whose hits differ at all, and fraction of pixels that differ."""
    differ_events = 0
    differ_pixels = 0
    for a, b in zip(reference, events, strict=True):
        if a != b:
            differ_events += 1
            differ_pixels += int(np.count_nonzero(a.to_dense() != b.to_dense()))
    n = len(reference)
    return differ_events / n, differ_pixels / (n * 40 * 250 * 768)


def bench(
    name: str,
    checkpoint: Path,
    device: str,
    precision: str,
    batch: int,
    n_events: int,
    reference: list[Any],
    threads: int,
) -> dict[str, Any]:
    import torch

    from bgcache.models import _torch as tm
    from bgcache.models import load_model

    gen = load_model(
        name, checkpoint, device=device, precision=precision, batch_events=batch, nintra=threads
    )
    cuda = device.startswith("cuda")
    gen.events([(99, i) for i in range(batch)])  # warm-up: kernels, allocator, pinned pool
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    keys = [(7, i) for i in range(n_events)]
    t0 = time.perf_counter()
    events = gen.events(keys)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    # the hit extraction alone, on one pass's worth of charges
    with torch.inference_mode():
        z = torch.zeros((batch * 40, gen.latent_dim))
        charges = tm.postprocess(gen._forward(z), name)
        if cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        tm.sparse_events(charges, batch)
        extract = time.perf_counter() - t1
    ref_events = events[: len(reference)]
    differ_events, differ_pixels = fidelity(reference, ref_events)
    return {
        "model": name,
        "device": device,
        "precision": precision,
        "batch_events": batch,
        "events": n_events,
        "seconds": seconds,
        "events_per_s": n_events / seconds,
        "peak_gib": peak,
        "extract_ms_per_event": 1000 * extract / batch,
        "hits_per_event": float(np.mean([e.n_hits for e in events])),
        "events_differ": differ_events,
        "pixels_differ": differ_pixels,
        "compared": len(reference),
    }


def bench_extraction(device: str, repeats: int = 20) -> dict[str, float]:
    """Hits of one event (0.9 % of pixels fired): numpy on a dense host copy (the path of
    SparseEvent.from_dense) against sparse_events where the charges are; best of repeats."""
    import torch

    from bgcache.hits import SparseEvent
    from bgcache.models._torch import sparse_events

    rng = np.random.default_rng(0)
    dense = np.zeros((40, 250, 768), np.uint8)
    fired = rng.random(dense.shape) < 0.009
    dense[fired] = rng.integers(1, 256, int(fired.sum()), dtype=np.uint8)
    charges = torch.from_numpy(dense).to(device)

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return 1000 * min(times)

    dense_ms = best(lambda: SparseEvent.from_dense(charges.cpu().numpy()))
    device_ms = best(lambda: sparse_events(charges, 1))
    return {"hits": int(fired.sum()), "dense_ms": dense_ms, "sparse_events_ms": device_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["convnet", "resnet", "ieagan"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16-mixed", "bf16", "fp16"])
    parser.add_argument(
        "--gate-events", type=int, default=0, help="keys of the fidelity gate's pools (0: no gate)"
    )
    parser.add_argument(
        "--gate-batch", type=int, default=8, help="batch_events of the gate's builds"
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8, 16, 32])
    parser.add_argument("--events", type=int, default=64, help="events timed per configuration")
    parser.add_argument("--reference-events", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (reference, cpu)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from bgcache.models import load_model
    from bgcache.models.checkpoint import init_checkpoint

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu to check the script on the CPU")
    from bgcache.models._torch import device_capabilities

    caps = device_capabilities(args.device)
    print(
        f"device: {device_name(args.device)}; {caps.device_class} ({caps.description})",
        file=sys.stderr,
    )
    extraction = bench_extraction(args.device)
    rows = []
    autos: dict[str, str] = {}
    gates: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ckpt = init_checkpoint(name, Path(tmp) / f"{name}.pt", seed=3).path
            cpu = load_model(name, ckpt, nintra=args.threads)
            n_ref = min(args.reference_events, args.events)
            reference = cpu.events([(7, i) for i in range(n_ref)])
            del cpu
            auto = load_model(name, ckpt, device=args.device, precision="auto")
            autos[name] = f"{auto.precision} ({auto.precision_reason})"
            del auto
            if args.gate_events:
                gates += gate(name, ckpt, args, Path(tmp))
            for precision in args.precisions:
                for batch in args.batches:
                    try:
                        row = bench(
                            name,
                            ckpt,
                            args.device,
                            precision,
                            batch,
                            args.events,
                            reference,
                            args.threads,
                        )
                    except MemoryError as exc:  # DeviceMemoryError: the batch does not fit
                        row = {
                            "model": name,
                            "precision": precision,
                            "batch_events": batch,
                            "error": str(exc).split(":")[0] + ": out of memory",
                        }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()
    if args.json:
        out = {
            "device": device_name(args.device),
            "device_class": caps.device_class,
            "auto": autos,
            "extraction": extraction,
            "rows": rows,
            "gate": gates,
        }
        print(json.dumps(out, indent=1))
        return
    print(f"Device: {device_name(args.device)}; {caps.device_class} ({caps.description})\n")
    for name, text in autos.items():
        print(f"- auto on {name}: {text}")
    print()
    e = extraction
    print(
        f"Hit extraction of one event ({e['hits']:,} hits): copy to the host + numpy "
        f"{e['dense_ms']:.2f} ms, sparse_events on {args.device} {e['sparse_events_ms']:.2f} ms "
        f"({e['dense_ms'] / e['sparse_events_ms']:.1f}x)\n"
    )
    print(
        "| model | precision | batch | events/s | peak GiB | extraction ms/event "
        "| events differing from CPU fp32 | pixels differing |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['precision']} | {r['batch_events']} | {r['error']} |||||")
            continue
        peak = "-" if np.isnan(r["peak_gib"]) else f"{r['peak_gib']:.1f}"
        print(
            f"| {r['model']} | {r['precision']} | {r['batch_events']} | {r['events_per_s']:.3g} "
            f"| {peak} "
            f"| {r['extract_ms_per_event']:.1f} "
            f"| {r['events_differ']:.0%} of {r['compared']} | {r['pixels_differ']:.1e} |"
        )

    if gates:
        print(
            f"\nFidelity gate on {args.device}, {args.gate_events} keys, batch_events "
            f"{args.gate_batch}:\n"
        )
        print(
            "| model | precision | mean occupancy | worst sensor | charge KS (fp32 halves) | cluster size KS (fp32 halves) | compare | gate |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for g in gates:
            c = {x["name"]: x for x in g["criteria"]}
            print(
                f"| {g['model']} | {g['pool']['precision']} | {c['occupancy']['text'].split(' against')[0]} "
                f"| {c['sensors']['text'].split(' of its')[0].removeprefix('worst ')} "
                f"| {c['charge']['value']:.5f} ({c['charge']['limit']:.5f}) "
                f"| {c['cluster_size']['value']:.5f} ({c['cluster_size']['limit']:.5f}) "
                f"| {'compatible' if c['compare']['passed'] else 'differs'} | {'pass' if g['passed'] else 'FAIL'} |"
            )


def gate(name: str, ckpt: Path, args: Any, tmp: Path) -> list[dict[str, Any]]:
    """The fidelity gate of every reduced precision of ``args.precisions`` on the device:
    pools of the same ``args.gate_events`` keys in fp32 and in each, judged by
    :func:`bgcache.fidelity.fidelity_gate`."""
    from bgcache import build_pool, open_pool
    from bgcache.fidelity import fidelity_gate

    def pool(precision: str) -> Any:
        path = tmp / f"gate-{name}-{precision}"
        build_pool(
            path, model=name, checkpoint=ckpt, events=args.gate_events, seed=11,
            device=args.device, precision=precision, batch_events=args.gate_batch,
            nintra=args.threads,
        )  # fmt: skip
        return open_pool(path)

    reference = pool("fp32")
    out = []
    for precision in args.precisions:
        if precision != "fp32":
            report = fidelity_gate(pool(precision), reference, events=args.gate_events)
            report["model"] = name
            out.append(report)
            print(
                json.dumps({k: report[k] for k in ("model", "passed", "criteria")}), file=sys.stderr
            )
    return out


if __name__ == "__main__":
    main()
