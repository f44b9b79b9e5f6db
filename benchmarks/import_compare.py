"""Import and compare benchmark: ROOT overlay files -> pool (uproot) against TTree::GetEntry
in C++; pool bytes against ROOT bytes; ``bgcache compare`` events/s and its memory.

One run, one core (pinned), the same full-size synthetic events (a pool of ``--events``):

1. the events written as BGOverlayInput reads them (TTree ``tree``, split TClonesArray
   branch ``PXDDigits`` of the replica ``Belle2::PXDDigit``, written by real ROOT) at the
   ROOT settings zlib-1, lz4-4, zstd-5 and lzma-9 (``benchmarks/basf2_fill.py`` writes them);
2. per setting: events/s of ``TTree::GetEntry`` into the TClonesArray (a C++ loop compiled
   by cling, best of two after a warm-up), of uproot reading the digit members alone
   (bgcache's reader: checks and sorting included), and of ``bgcache import`` as a whole
   (reading, checking, sorting, compressing, writing the pool); kB/event of the file and
   of the pool; the imported events are checked to equal the source events;
3. ``compare``: events/s of gathering the statistics (clusters included) and the peak
   resident memory of a process comparing pools of N and 4N events with the same sample
   (flat: the sample, not the pool, sets it).

Run:  python benchmarks/import_compare.py [--events 100] [--sample 50] [--cpu N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numcodecs import blosc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from basf2_fill import import_standin, machine, tree_rate, write_root_files

from bgcache.build import build_pool
from bgcache.compare import gather
from bgcache.hits import SparseEvent
from bgcache.importer import OverlayFileReader, import_pool, scan_source
from bgcache.store.pool import open_pool

#: A child process that compares two pools and prints its peak resident memory (kB): the
#: VmHWM of its own address space (ru_maxrss would carry the parent's high-water mark over
#: the exec).
_RSS_CHILD = """
import sys
from pathlib import Path
from bgcache.compare import compare_pools
compare_pools(sys.argv[1], sys.argv[2], sample=int(sys.argv[3]))
status = Path("/proc/self/status").read_text().splitlines()
print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def read_all(reader: OverlayFileReader) -> list[SparseEvent]:
    """Every event of the reader's files, read in blocks of 256 as the import reads them (a
    read holds at most a block's digits)."""
    n = reader.n_events
    return [e for i in range(0, n, 256) for e in reader.read(i, min(n, i + 256))]


def pool_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mib(pool: Path, reference: Path, sample: int, cpu: int) -> float:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(cpu),
            sys.executable,
            "-c",
            _RSS_CHILD,
            str(pool),
            str(reference),
            str(sample),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--sample", type=int, default=50, help="events compare reads from each pool")
    ap.add_argument("--cpu", type=int, default=None, help="core to run on (default: the last)")
    args = ap.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    blosc.set_nthreads(1)
    basf2, root = import_standin()
    import uproot

    print(
        f"machine: {machine()}; pinned to core {cpu}; ROOT {root.gROOT.GetVersion()}, uproot {uproot.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        source = tmp / "source"
        build_pool(source, model="synthetic", events=args.events)
        events = [e for _, block in open_pool(source).blocks() for e in block]
        hits = sum(e.n_hits for e in events) / len(events)
        files = write_root_files(basf2, root, source, tmp)
        print(f"\n{args.events} synthetic events, {hits:,.0f} hits/event\n")
        print("## Import: ROOT file -> pool, one core\n")
        print(
            "| ROOT setting | file kB/event | TTree::GetEntry (C++) events/s | uproot read + check events/s | bgcache import events/s | import / GetEntry | pool kB/event | pool / file bytes |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, path in files.items():
            seconds, digits = tree_rate(root, path)
            assert digits == round(hits * len(events)), (digits, hits)
            getentry = len(events) / seconds
            reader = OverlayFileReader([scan_source(path)])
            read_all(reader)  # warm: page cache, streamers
            t0 = time.perf_counter()
            read = read_all(reader)
            uproot_rate = len(events) / (time.perf_counter() - t0)
            reader.close()
            assert read == events, "uproot read other events than were written"
            pool = tmp / f"imported-{label}"
            t0 = time.perf_counter()
            result = import_pool(pool, [path])
            import_rate = len(events) / (time.perf_counter() - t0)
            assert result.events_written == len(events)
            assert [e for _, block in open_pool(pool).blocks() for e in block] == events
            file_kb = path.stat().st_size / len(events) / 1e3
            pool_kb = pool_bytes(pool) / len(events) / 1e3
            print(
                f"| {label} | {file_kb:.1f} | {getentry:.1f} | {uproot_rate:.1f} | {import_rate:.1f} "
                f"| {import_rate / getentry:.2f}x | {pool_kb:.1f} | {pool_kb / file_kb:.2f} |"
            )

        print("\n## Compare, one core\n")
        imported = tmp / "imported-zstd-5"
        pool = open_pool(source)
        t0 = time.perf_counter()
        stats = gather(pool, None)
        rate = stats.n_events / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        gather(pool, None)  # a second pass, the page cache warm
        rate = max(rate, stats.n_events / (time.perf_counter() - t0))
        print(f"gathering statistics with clusters: {rate:.1f} events/s ({stats.n_events} events)")
        big = tmp / "big"
        build_pool(big, model="synthetic", events=4 * args.events, seed=3)
        small_rss = peak_rss_mib(source, imported, args.sample, cpu)
        big_rss = peak_rss_mib(big, imported, args.sample, cpu)
        print(
            f"peak RSS of a compare process, --sample {args.sample}: pool of {args.events} events "
            f"{small_rss:.0f} MiB, pool of {4 * args.events} events {big_rss:.0f} MiB "
            f"(ratio {big_rss / small_rss:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
