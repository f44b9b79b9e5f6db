"""Import memory benchmark: the peak resident memory of ``bgcache import`` for real-size
events, for blocks at the memory budget, and for the compression bomb of issue 20.

Each case is one ``python -m bgcache import`` process, measured by a small parent process
(``wait4``'s ``ru_maxrss``: a child forked from this process, which loaded ROOT, would inherit
its high-water mark) under an address-space limit (``--limit-gib``), optionally pinned to one
core. The ROOT files are written by real ROOT with the cling replica of ``Belle2::PXDDigit``
(``tests/root_files.py``, the tests' writer):

* ``real``: ``--events`` full-size synthetic events (~69,000 digits each, shuffled within each
  entry as a digitizer may write them), zstd-5, blocks of 256;
* ``budget``: 12 entries of every pixel once (7,680,000 digits each, the most an entry may
  hold), zstd-5, blocks of 4: 30.7 million digits a block, under the budget of 2**25;
* ``bomb``: the probe's file, 64 entries of 2,000,000 identical digits (zstd-5, ~7000x), with
  the default blocks (refused from the digit counts) and with blocks of 16 (within the budget:
  read in pieces, refused at the first entry's duplicate digit).

``--baseline SRC`` runs the same cases with another bgcache source on ``PYTHONPATH`` (e.g.
``git worktree add /tmp/before f308e3d``) and prints the ratio of the peaks, measured in the
same run.

Run:  python benchmarks/import_memory.py [--events 512] [--cases real,budget,bomb]
                                         [--baseline SRC] [--cpu N] [--limit-gib 6]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from basf2_fill import machine  # noqa: E402

#: The measuring parent: runs argv[2:] and prints the child's peak RSS (kB) and exit code.
_MEASURE = """
import os, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
proc = subprocess.Popen(sys.argv[2:], preexec_fn=cap, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
lines = err.strip().splitlines() or [""]
kind = ("memory" if "MemoryError" in err else "traceback") if "Traceback" in err else "line"
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), kind, lines[-1], sep="\\t")
"""

#: What a one-line refusal says, in short.
REFUSALS = {
    "an import holds per block": "refused: block over the budget",
    "second digit on pixel": "refused: a duplicate digit",
    "and an event holds at most": "refused: entry over the pixels",
}


def same_digits(n: int) -> tuple[np.ndarray, ...]:
    one = np.ones(n, dtype=np.uint16)
    return (np.full(n, 8480, dtype=np.uint16), one, one * 2, one * 3)


def every_pixel() -> tuple[np.ndarray, ...]:
    from bgcache.geometry import N_V, PIXELS_PER_SENSOR, VXD_IDS

    pixel = np.arange(40 * PIXELS_PER_SENSOR)
    sensor = pixel // PIXELS_PER_SENSOR
    columns = (
        np.asarray(VXD_IDS)[sensor],
        pixel % PIXELS_PER_SENSOR // N_V,
        pixel % N_V,
        pixel % 255 + 1,
    )
    return tuple(np.ascontiguousarray(c, dtype=np.uint16) for c in columns)


def write_files(tmp: Path, cases: list[str], events: int) -> dict[str, tuple[Path, int]]:
    """``case: (file, digits in its largest block)``."""
    import root_files

    from bgcache import load_model

    out: dict[str, tuple[Path, int]] = {}
    if "real" in cases:
        made = load_model("synthetic").events([(1, i) for i in range(events)])
        entries = [root_files.event_digits(e, shuffle=i) for i, e in enumerate(made)]
        path = root_files.write_overlay_file(tmp / "real.root", entries, compression=505)
        per_block = max(sum(e.n_hits for e in made[i : i + 256]) for i in range(0, len(made), 256))
        out["real"] = (path, per_block)
    if "budget" in cases:
        entry = every_pixel()
        path = root_files.write_overlay_file(tmp / "budget.root", [entry] * 12, compression=505)
        out["budget"] = (path, 4 * entry[0].size)
    if "bomb" in cases:
        entry = same_digits(2_000_000)
        path = root_files.write_overlay_file(tmp / "bomb.root", [entry] * 64, compression=505)
        out["bomb"] = (path, 64 * 2_000_000)
        out["bomb-pieces"] = (path, 16 * 2_000_000)
    return out


BLOCKS = {
    "real": [],
    "budget": ["--block-events", "4"],
    "bomb": [],
    "bomb-pieces": ["--block-events", "16"],
}


def measure(
    source: Path, file: Path, extra: list[str], tmp: Path, limit: int, cpu: int | None
) -> dict[str, Any]:
    pool = tmp / f"pool-{time.monotonic_ns()}"
    child = [sys.executable, "-m", "bgcache", "import", str(pool), str(file), *extra]
    if cpu is not None:
        child = ["taskset", "-c", str(cpu), *child]
    env = {**os.environ, "PYTHONPATH": str(source)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(limit), *child],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    seconds = time.perf_counter() - t0
    peak_kb, code, kind, last = done.stdout.rstrip("\n").split("\t", 3)
    if int(code) == 0:
        outcome = "imported"
    elif int(code) < 0:
        outcome = f"killed by signal {-int(code)}"
    elif kind != "line":
        outcome = "MemoryError traceback" if kind == "memory" else "traceback"
    else:
        outcome = next((v for k, v in REFUSALS.items() if k in last), "refused: " + last[:60])
    return {"peak_mib": int(peak_kb) / 1024, "seconds": seconds, "outcome": outcome}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=512, help="real-size events (case real)")
    parser.add_argument("--cases", default="real,budget,bomb")
    parser.add_argument("--baseline", type=Path, help="another bgcache source to compare with")
    parser.add_argument("--cpu", type=int, help="pin each import to this core")
    parser.add_argument("--limit-gib", type=float, default=6.0, help="address-space limit")
    args = parser.parse_args()
    cases = args.cases.split(",")
    limit = int(args.limit_gib * 2**30)
    sources = {"this": HERE.parent}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    with tempfile.TemporaryDirectory(prefix="bgcache-import-memory-") as tmp_name:
        tmp = Path(tmp_name)
        files = write_files(tmp, cases, args.events)
        rows = []
        for case, (path, digits) in files.items():
            runs = {
                name: measure(src, path, BLOCKS[case], tmp, limit, args.cpu)
                for name, src in sources.items()
            }
            rows.append((case, path.stat().st_size, digits, runs))
    print(f"Machine: {machine()}; address-space limit {args.limit_gib:g} GiB per import")
    print()
    head = "| case | file kB | digits in a block | peak MiB | bytes/digit | s | outcome |"
    if "baseline" in sources:
        head += " baseline peak MiB | baseline outcome | peak / baseline |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for case, nbytes, digits, runs in rows:
        this = runs["this"]
        per_digit = this["peak_mib"] * 2**20 / digits if this["outcome"] == "imported" else None
        line = (
            f"| {case} | {nbytes / 1000:,.0f} | {digits:,} | "
            f"{this['peak_mib']:,.0f} | {'-' if per_digit is None else f'{per_digit:.1f}'} | "
            f"{this['seconds']:.1f} | {this['outcome']} |"
        )
        if "baseline" in runs:
            base = runs["baseline"]
            line += (
                f" {base['peak_mib']:,.0f} | {base['outcome']} | "
                f"{this['peak_mib'] / base['peak_mib']:.2f} |"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
