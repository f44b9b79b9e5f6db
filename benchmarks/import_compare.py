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
3. ``compare``: events/s of gathering the statistics (clusters included) and of the
   report (its statistical tests), and the peak resident memory of a process comparing
   pools of N and 4N events with the same sample (flat: the sample, not the pool, sets it);
4. ``clusters`` (``--parts clusters`` runs it alone, without ROOT): on ``--cluster-events``
   full-size synthetic events, ms/event of the cluster labels alone and events/s of clusters
   and histograms (what ``compare`` pays per event) of bgcache's clustering
   (``scipy.sparse.csgraph`` over runs of pixels) beside the numpy union-find it replaced,
   ``scipy.ndimage.label`` on the dense image and ``csgraph`` over the pixel links
   (``benchmarks/_clusters.py``); each event through every method in turn, three times,
   the medians of those times; every method is checked to give the same labels and cluster
   statistics.

Run:  python benchmarks/import_compare.py [--events 100] [--sample 50] [--cpu N]
          [--parts import,compare,clusters] [--cluster-events 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import blosc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _clusters
from basf2_fill import import_standin, machine, tree_rate, write_root_files

from bgcache.build import build_pool
from bgcache.clusters import ClusterStatistics, cluster_labels, find_clusters
from bgcache.compare import compare_statistics, gather
from bgcache.geometry import IMAGE_SHAPE
from bgcache.hits import SparseEvent
from bgcache.importer import OverlayFileReader, import_pool, scan_source
from bgcache.models import load_model
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


def import_part(args: argparse.Namespace, tmp: Path, source: Path) -> Path:
    """Part 1-2: the ROOT files, their import; returns the zstd-5 pool."""
    basf2, root = import_standin()
    import uproot

    print(f"ROOT {root.gROOT.GetVersion()}, uproot {uproot.__version__}")
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
    return tmp / "imported-zstd-5"


def compare_part(args: argparse.Namespace, tmp: Path, source: Path, reference: Path) -> None:
    """Part 3: gathering, the report, peak memory."""
    print("\n## Compare, one core\n")
    pool = open_pool(source)
    t0 = time.perf_counter()
    stats = gather(pool, None)
    rate = stats.n_events / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    gather(pool, None)  # a second pass, the page cache warm
    rate = max(rate, stats.n_events / (time.perf_counter() - t0))
    print(f"gathering statistics with clusters: {rate:.1f} events/s ({stats.n_events} events)")
    other = gather(open_pool(reference), None)
    t0 = time.perf_counter()
    compare_statistics(stats, other)  # the first imports scipy.stats
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = compare_statistics(stats, other)
    seconds = time.perf_counter() - t0
    print(
        f"the report with its {report['verdict']['quantities']} tests: {1e3 * seconds:.0f} ms "
        f"({stats.n_events} and {other.n_events} events; the first report, which imports "
        f"scipy.stats, {1e3 * first:.0f} ms)"
    )
    big = tmp / "big"
    build_pool(big, model="synthetic", events=4 * args.events, seed=3)
    cpu = max(os.sched_getaffinity(0))
    small_rss = peak_rss_mib(source, reference, args.sample, cpu)
    big_rss = peak_rss_mib(big, reference, args.sample, cpu)
    print(
        f"peak RSS of a compare process, --sample {args.sample}: pool of {args.events} events "
        f"{small_rss:.0f} MiB, pool of {4 * args.events} events {big_rss:.0f} MiB "
        f"(ratio {big_rss / small_rss:.2f})"
    )


def clusters_part(n_events: int) -> None:
    """Part 4: the ways of finding clusters, on the same full-size events."""
    events = load_model("synthetic").events([(11, i) for i in range(n_events)])
    hits = sum(e.n_hits for e in events) / len(events)
    event_lookup = np.full(_clusters.EVENT_LOOKUP_SIZE, -1, dtype=np.int32)
    dense = np.zeros(IMAGE_SHAPE, dtype=bool)
    labellers = {
        "numpy union-find over pixel links (before)": lambda e: _clusters.union_find_labels(
            e, event_lookup
        ),
        "scipy.ndimage.label, dense image": lambda e: _clusters.ndimage_labels(e, dense),
        "scipy csgraph over pixel links": lambda e: _clusters.csgraph_pixel_labels(e, event_lookup),
        "scipy csgraph over runs (bgcache now)": lambda e: cluster_labels(e),
    }
    bgcache = "scipy csgraph over runs (bgcache now)"
    for e in events:  # every method finds the same clusters
        want = cluster_labels(e)
        clusters = find_clusters(e)
        for name, labeller in labellers.items():
            labels = labeller(e)
            assert np.array_equal(_clusters.canonical(labels), want), name
            found = _clusters.clusters_from_labels(e, labels)
            assert _clusters.same_clusters(found, clusters), name

    def histograms_of(name: str) -> Any:
        if name == bgcache:
            return lambda stats, e: stats.add(e)
        labeller = labellers[name]
        return lambda stats, e: stats.count(_clusters.clusters_from_labels(e, labeller(e)))

    # every event through every method in turn, three times: the medians of these paired
    # times hold where other work on the machine comes and goes in bursts
    label_t: dict[str, list[float]] = {name: [] for name in labellers}
    full_t: dict[str, list[float]] = {name: [] for name in labellers}
    results = {name: ClusterStatistics() for name in labellers}
    adders = {name: histograms_of(name) for name in labellers}
    for _ in range(3):
        for e in events:
            for name, labeller in labellers.items():
                t0 = time.perf_counter()
                labeller(e)
                label_t[name].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                adders[name](results[name], e)
                full_t[name].append(time.perf_counter() - t0)
    assert all(stats == results[bgcache] for stats in results.values())
    label_s = {name: statistics.median(t) for name, t in label_t.items()}
    full_s = {name: statistics.median(t) for name, t in full_t.items()}
    print(f"\n## Clusters, one core: {n_events} synthetic events, {hits:,.0f} hits/event\n")
    print(
        "| method | labels, ms/event | clusters + histograms, ms/event | events/s | events/s / bgcache's |"
    )
    print("|---|---|---|---|---|")
    for name in labellers:
        print(
            f"| {name} | {1e3 * label_s[name]:.1f} | {1e3 * full_s[name]:.1f} | "
            f"{1 / full_s[name]:.0f} | {full_s[bgcache] / full_s[name]:.2f}x |"
        )
    print("\nevery method: the same labels and cluster statistics on every event")


PARTS = ("import", "compare", "clusters")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--sample", type=int, default=50, help="events compare reads from each pool")
    ap.add_argument("--cpu", type=int, default=None, help="core to run on (default: the last)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    ap.add_argument("--cluster-events", type=int, default=50, help="events of the clusters part")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        ap.error(f"unknown parts {sorted(parts - set(PARTS))}; choose from {', '.join(PARTS)}")
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    blosc.set_nthreads(1)
    print(f"machine: {machine()}; pinned to core {cpu}; numpy {np.__version__}, scipy {_scipy()}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        source = tmp / "source"
        if parts & {"import", "compare"}:
            build_pool(source, model="synthetic", events=args.events)
        reference = tmp / "reference"
        if "import" in parts:
            reference = import_part(args, tmp, source)
        elif "compare" in parts:  # another seed stands for the imported pool
            build_pool(reference, model="synthetic", events=args.events, seed=2)
        if "compare" in parts:
            compare_part(args, tmp, source, reference)
    if "clusters" in parts:
        clusters_part(args.cluster_events)
    return 0


def _scipy() -> str:
    import scipy

    return str(scipy.__version__)


if __name__ == "__main__":
    raise SystemExit(main())
