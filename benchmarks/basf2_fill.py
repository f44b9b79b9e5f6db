"""basf2 module fill benchmark: pool -> TClonesArray of PXDDigit, against ROOT files read by TTree.

One run, one core, the same synthetic events (a pool of ``--events`` events, drawn once;
bulk paths and ROOT reads: best of two passes after a warm-up pass):

1. events/s that the basf2 module's ``event()`` delivers into the ``PXDDigits_beamBG``
   TClonesArray (pool read + decode + fill), per fill path: ``fillArray`` (the stand-in of
   basf2's pythonization), ``cling`` (the filler bgcache compiles), ``python`` (the per-hit
   fallback, a few events only), with the default prefetch and without; and the fill alone
   (column checks and conversion included), ms/event, measured without prefetch (on one
   core a prefetch thread's decoding would count into it);
2. the same events stored as BGOverlayInput reads them today: a ROOT file with a TTree
   ``tree`` and a split (99) TClonesArray branch ``PXDDigits`` of the replica
   ``Belle2::PXDDigit``, at the ROOT compression settings zlib-1, lz4-4, zstd-5 and lzma-9:
   kB/event and events/s of ``TTree::GetEntry`` into the TClonesArray (a C++ loop, as
   BGOverlayInput reads);
3. the pool's kB/event, and the goals: the module >= 1.5x the fastest ROOT setting and
   >= 100x the per-hit fill; the pool <= 0.75x the smallest ROOT file that reads faster than
   50 events/s.

basf2 is not installed here: the module runs on real ROOT (PyROOT, cling, TClonesArray,
TTree) with the C++ replicas and the basf2 stand-in of ``tests/basf2_standin`` (NOT basf2).

Run:  python benchmarks/basf2_fill.py [--events 200] [--python-events 3] [--cpu N]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from numcodecs import blosc

from bgcache.adapters import _digits
from bgcache.adapters import basf2 as adapter
from bgcache.build import build_pool
from bgcache.store.pool import open_pool

STANDIN = Path(__file__).resolve().parent.parent / "tests" / "basf2_standin"
#: label -> ROOT compression setting (algorithm * 100 + level)
ROOT_SETTINGS = {"zlib-1": 101, "lz4-4": 404, "zstd-5": 505, "lzma-9": 209}

TREE_CODE = r"""
#include <TFile.h>
#include <TTree.h>
#include <TClonesArray.h>
#include <chrono>
namespace bgcache_bench {
  struct TreeWriter {
    TFile* file;
    TTree* tree;
    TClonesArray* digits;
    TreeWriter(const char* path, int compression)
    {
      file = TFile::Open(path, "RECREATE", "", compression);
      tree = new TTree("tree", "background overlay events");
      digits = new TClonesArray("Belle2::PXDDigit");
      tree->Branch("PXDDigits", &digits, 32000, 99);
    }
    void fill() { tree->Fill(); }
    void close() { file->Write(); file->Close(); delete file; }
  };
  /** Seconds to GetEntry every entry of `tree` into a TClonesArray; digits counted in n. */
  inline double read_tree(const char* path, long& n_digits)
  {
    TFile* file = TFile::Open(path, "READ");
    TTree* tree = file->Get<TTree>("tree");
    TClonesArray* digits = nullptr;
    tree->SetBranchAddress("PXDDigits", &digits);
    n_digits = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (Long64_t i = 0; i < tree->GetEntries(); ++i) {
      tree->GetEntry(i);
      n_digits += digits->GetEntriesFast();
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    delete file;
    return seconds;
  }
}
"""


def machine() -> str:
    cpu, flags = "unknown CPU", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{cpu} ({vector}), {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def import_standin() -> tuple[Any, Any]:
    sys.path.insert(0, str(STANDIN))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pip ROOT's "alpha stage" notice
        import basf2
        import ROOT
    assert "NOT basf2" in (basf2.__doc__ or "")
    return basf2, ROOT


def module_rate(basf2: Any, pool: Path, fill: str, n: int, prefetch: int) -> tuple[float, float]:
    """(events/s of event(), ms of the fill per event) over n events after the first.

    The module is created and initialized anew each time (a fresh overlay, the same draw).
    """
    basf2.reset()
    basf2.use_fill_array(fill == "fillArray")
    module = adapter.PXDBackgroundOverlayModule(
        pool, seed=1, extension="_beamBG", fill=fill, on_exhausted="error", prefetch=prefetch
    )
    module.initialize()
    module.event()  # opens the overlay (prefetch thread) and reads the first window
    core = module.core
    fill_seconds = core.fill_stats.seconds
    t0 = time.perf_counter()
    for _ in range(n):
        module.event()
    seconds = time.perf_counter() - t0
    fill_ms = (core.fill_stats.seconds - fill_seconds) / n * 1e3
    module.terminate()
    assert core.filler.path == fill
    return n / seconds, fill_ms


def write_root_files(basf2: Any, root: Any, pool: Path, tmp: Path) -> dict[str, Path]:
    """The pool's events in pool order, in one ROOT file per compression setting."""
    root.gInterpreter.Declare(TREE_CODE)
    fill = _digits.compile_filler(root)
    assert fill is not None
    reader = open_pool(pool)
    events = [event for _, block in reader.blocks() for event in block]
    files = {}
    for label, setting in ROOT_SETTINGS.items():
        path = tmp / f"bg-{label}.root"
        writer = root.bgcache_bench.TreeWriter(str(path), setting)
        target = _ArrayView(writer.digits)
        for event in events:
            fill(target, event)
            writer.fill()
        writer.close()
        files[label] = path
    return files


class _ArrayView:
    """What the fillers take (getPtr/getName) for a TClonesArray outside the DataStore."""

    def __init__(self, clones: Any) -> None:
        self._clones = clones

    def getPtr(self) -> Any:
        return self._clones

    def getName(self) -> str:
        return "tree branch PXDDigits"


def tree_rate(root: Any, path: Path) -> tuple[float, int]:
    """(seconds to read every entry, best of 2 after a warm-up pass; digits read)."""
    count = ctypes.c_long(0)
    root.bgcache_bench.read_tree(str(path), count)  # warm: streamer info, page cache
    seconds = min(root.bgcache_bench.read_tree(str(path), count) for _ in range(2))
    return seconds, int(count.value)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--python-events", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=None, help="core to run on (default: the last)")
    args = ap.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    blosc.set_nthreads(1)
    basf2, root = import_standin()
    print(f"machine: {machine()}; pinned to core {cpu}; ROOT {root.gROOT.GetVersion()}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pool = tmp / "pool"
        build_pool(pool, model="synthetic", events=args.events)
        n = args.events - 1  # the module draws the pool once: the first event, then n more
        hits = sum(e.n_hits for _, block in open_pool(pool).blocks() for e in block)
        pool_kb = sum(p.stat().st_size for p in pool.rglob("*") if p.is_file()) / args.events / 1e3
        print(f"\n{args.events} synthetic events, {hits / args.events:,.0f} hits/event\n")

        print("## The module's event(): pool read + decode + fill into the TClonesArray\n")
        print(
            "| fill path | events/s (prefetch 2, the default) | events/s (no prefetch) | fill alone (no prefetch), ms/event |"
        )
        print("|---|---|---|---|")
        rates = {}
        for fill, count in (("fillArray", n), ("cling", n), ("python", args.python_events)):
            module_rate(basf2, pool, fill, min(count, 8), 2)  # warm: page cache, JIT
            runs = 2 if fill != "python" else 1
            rates[fill] = max(module_rate(basf2, pool, fill, count, 2)[0] for _ in range(runs))
            plain, fill_ms = max(module_rate(basf2, pool, fill, count, 0) for _ in range(runs))
            print(f"| {fill} | {rates[fill]:,.1f} | {plain:,.1f} | {fill_ms:,.2f} |")

        files = write_root_files(basf2, root, pool, tmp)
        print("\n## The same events in ROOT files, TTree::GetEntry into a TClonesArray (C++)\n")
        print("| storage | kB/event | events/s |")
        print("|---|---|---|")
        tree = {}
        for label, path in files.items():
            seconds, digits = tree_rate(root, path)
            assert digits == hits, f"{label}: read {digits} digits, wrote {hits}"
            kb = path.stat().st_size / args.events / 1e3
            tree[label] = (kb, args.events / seconds)
            print(f"| ROOT {label} | {kb:,.1f} | {args.events / seconds:,.1f} |")
        best = max(rates["fillArray"], rates["cling"])
        print(f"| bgcache pool | {pool_kb:,.1f} | {best:,.1f} (the module, best bulk path) |")

        fastest_label = max(tree, key=lambda k: tree[k][1])
        fast_enough = {k: v for k, v in tree.items() if v[1] > 50}
        print("\n## Goals\n")
        print(
            f"- module (best bulk path) / fastest ROOT setting ({fastest_label}): "
            f"{best / tree[fastest_label][1]:.2f}x (goal >= 1.5x)"
        )
        per_hit = best / rates["python"]
        print(f"- module (best bulk path) / per-hit fill: {per_hit:,.0f}x (goal >= 100x)")
        if fast_enough:
            smallest = min(fast_enough, key=lambda k: fast_enough[k][0])
            print(
                f"- pool size / smallest ROOT file reading > 50 events/s ({smallest}): "
                f"{pool_kb / fast_enough[smallest][0]:.2f}x (goal <= 0.75x)"
            )
        else:
            print("- no ROOT setting read faster than 50 events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
