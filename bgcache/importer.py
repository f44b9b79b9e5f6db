"""Pools from the background overlay files that BGOverlayInput reads (``bgcache import``).

Belle II's background overlay files (simulated beam background or random-trigger data, one
ROOT file per run) hold one background event per entry of the TTree ``tree``; the PXD part
is the branch ``PXDDigits``, a ``TClonesArray`` of ``Belle2::PXDDigit`` (``m_sensorID`` a
packed VxdID, ``m_uCellID``, ``m_vCellID``, ``m_charge``, all ``unsigned short``). basf2's
RootOutput writes it split (``splitLevel=99``), so each member is a branch of its own,
``PXDDigits.m_sensorID`` ..., which uproot reads as jagged arrays: no ROOT is needed.

One entry becomes one pool event, keyed ``(seed, index)`` with ``index`` the entry's
position over the files in the order given (as BGOverlayInput's TChain numbers them), so an
import is resumable, can be cut into ``--shard K/N`` parts, and repeats byte for byte. The
pool's content record says the events are imported (``model: "imported"``), lists the
source files with their sha256 and entry counts, and is the pool's identity: another list
of files, a GAN build into the pool, or an import into a GAN pool is refused.

Each entry is checked before anything of its block is written (the store's crash-safety
rules hold: a refused file leaves the blocks before it complete and nothing else): a VxdID
that is not one of the 40 PXD sensors, a pixel outside the 250 x 768 grid, a charge of 0 or
above 255 (the pool stores 8-bit ADU), two digits on one pixel. Digits are sorted by
(sensor, u, v), as every pool event is.

An unsplit ``PXDDigits`` branch (``splitLevel=0``) is refused: uproot 5 cannot deserialize
a ``TClonesArray`` of a user class written unsplit (measured: it reads the array header and
then fails), and hand-parsing ROOT's object streaming is not worth owning here.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bgcache._version import __version__
from bgcache.block_tasks import BuildResult, BuildRun, Progress
from bgcache.build import (
    MAX_BUILD_BLOCKS,
    block_range,
    build_inline,
    parse_shard,
    plan_todo,
    run_blocks,
)
from bgcache.errors import (
    BgcacheError,
    ImportSourceError,
    MissingDependencyError,
    PoolMismatchError,
    UsageError,
)
from bgcache.geometry import N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR, VXD_IDS, unpack_vxd_id
from bgcache.hits import SparseEvent
from bgcache.seeding import EventKey, validate_index, validate_seed
from bgcache.store.format import DEFAULT_BLOCK_EVENTS, MAX_BLOCK_EVENTS, Layout
from bgcache.store.pool import open_storage
from bgcache.store.records import IMPORTED_MODEL
from bgcache.store.storage import Storage
from bgcache.store.writer import check_build_location, create_or_open_pool

#: The TTree of event data in a basf2 output file (``RootIOUtilities::c_treeNames``).
TREE = "tree"
#: The branch of PXD digits.
BRANCH = "PXDDigits"
#: The class the branch holds.
DIGIT_CLASS = "Belle2::PXDDigit"
#: The members of ``Belle2::PXDDigit`` read, in (sensor, u, v, charge) order.
MEMBERS = ("m_sensorID", "m_uCellID", "m_vCellID", "m_charge")
#: A branch that marks a file for BG mixing, not overlay (BGOverlayInput refuses those too).
MIXING_BRANCH = "BackgroundMetaData"
#: Largest charge a pool event holds (uint8 ADU).
MAX_POOL_CHARGE = 255
#: What a content record names as the events' source.
SOURCE = "BGOverlayInput ROOT files"
#: Digits in one event at most (every pixel of the PXD once).
MAX_DIGITS_PER_EVENT = N_SENSORS * PIXELS_PER_SENSOR

#: VxdID (segment 0) -> sensor index, 255 where the id is no PXD sensor.
_SENSOR_OF_VXD_ID = np.full(1 << 16, 255, dtype=np.uint8)
_SENSOR_OF_VXD_ID[VXD_IDS] = np.arange(N_SENSORS, dtype=np.uint8)


def _uproot() -> Any:
    try:
        import uproot
    except ImportError:
        raise MissingDependencyError(
            "reading ROOT files needs uproot: pip install 'bgcache[uproot]'"
        ) from None
    return uproot


@dataclass(frozen=True)
class SourceFile:
    """One background overlay file of an import.

    Attributes:
        path: where it was read. sha256: its digest (its identity in the pool).
        entries: entries of its TTree ``tree`` (one event each). nbytes: its size.
    """

    path: Path
    sha256: str
    entries: int
    nbytes: int

    def record(self) -> dict[str, Any]:
        """Its entry in the pool's content record."""
        return {
            "name": self.path.name,
            "sha256": self.sha256,
            "entries": self.entries,
            "bytes": self.nbytes,
        }


def expand_sources(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files of an import in order: each path as given, a directory as its ``*.root``
    files sorted by name.

    Raises:
        UsageError: no path, a path that does not exist, is not a regular file, a
            directory without ``*.root`` files, or a file given twice.
    """
    out: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.glob("*.root") if p.is_file())
            if not found:
                raise UsageError(f"directory '{path}' holds no *.root files: give the files")
            out.extend(found)
        elif not path.exists():
            raise UsageError(f"background file '{path}' does not exist")
        elif not path.is_file():
            raise UsageError(f"background file '{path}' is not a regular file")
        else:
            out.append(path)
    if not out:
        raise UsageError("no background files given: pass the ROOT files (or a directory)")
    seen: dict[Path, Path] = {}
    for path in out:
        real = path.resolve()
        if real in seen:
            raise UsageError(
                f"background file '{path}' is given twice (also as '{seen[real]}'): "
                "each file's events would be imported twice"
            )
        seen[real] = path
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_tree(path: Path) -> tuple[Any, Any]:
    """``(file, tree)`` of a background file, its ``PXDDigits`` branch checked.

    Raises:
        ImportSourceError: not a ROOT file, truncated, no tree, a BG mixing file, no
            ``PXDDigits`` branch, another class, unsplit, members missing.
    """
    uproot = _uproot()
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"root":
        raise ImportSourceError(
            f"'{path}' is not a ROOT file (it does not start with 'root'): give the "
            "background overlay files (basf2 output files)"
        )
    try:
        # no array cache: each entry is read once, and a cache would hold up to 100 MB
        handle = uproot.open(path, handler=uproot.MemmapSource, array_cache=None)
    except Exception as exc:  # uproot raises OSError, ValueError, KeyError... for damage
        raise ImportSourceError(
            f"'{path}' cannot be read as a ROOT file ({_reason(exc)}): it is truncated or "
            "damaged; copy it again"
        ) from None
    begin, end = getattr(handle.file, "fBEGIN", 0), getattr(handle.file, "fEND", 0)
    if not 0 < begin < end <= path.stat().st_size:  # the header says where the data ends
        handle.close()
        raise ImportSourceError(
            f"'{path}' cannot be read as a ROOT file (its header says the data ends at byte "
            f"{end}, the file has {path.stat().st_size}): it is truncated or damaged; copy it again"
        )
    try:
        tree = handle[TREE]
        if not hasattr(tree, "num_entries"):
            raise KeyError(TREE)
    except Exception:
        handle.close()
        raise ImportSourceError(
            f"'{path}' has no TTree '{TREE}': it is not a basf2 output file "
            "(background overlay files are)"
        ) from None
    names = set(tree.keys(recursive=False))
    if MIXING_BRANCH in names:
        handle.close()
        raise ImportSourceError(
            f"'{path}' is a BG mixing sample (it has a {MIXING_BRANCH} branch), not a "
            "background overlay file: give the overlay files BGOverlayInput reads"
        )
    if BRANCH not in names:
        handle.close()
        shown = ", ".join(sorted(names)[:8]) or "none"
        raise ImportSourceError(
            f"'{path}' has no branch '{BRANCH}' in tree '{TREE}' (branches: {shown}): the "
            "file holds no PXD digits; leave it out"
        )
    branch = tree[BRANCH]
    clones = _member(branch, "fClonesName")
    if clones is not None and clones != DIGIT_CLASS:
        handle.close()
        raise ImportSourceError(
            f"'{path}': branch '{BRANCH}' holds {clones}, not {DIGIT_CLASS}: it is not a "
            "background overlay file"
        )
    sub = {b.name for b in branch.branches}
    if not sub:
        handle.close()
        raise ImportSourceError(
            f"'{path}': branch '{BRANCH}' is stored unsplit (splitLevel 0), which uproot cannot "
            "read for a TClonesArray of PXDDigit: rewrite the file split, e.g. with a basf2 "
            "path of RootInput and RootOutput (its default splitLevel is 99)"
        )
    missing = [m for m in MEMBERS if f"{BRANCH}.{m}" not in sub]
    if missing:
        handle.close()
        raise ImportSourceError(
            f"'{path}': branch '{BRANCH}' has no member branch {', '.join(missing)}: it is not "
            f"{DIGIT_CLASS} as basf2 writes it"
        )
    return handle, tree


def _member(branch: Any, name: str) -> Any:
    try:
        return branch.member(name)
    except Exception:
        return None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def scan_source(path: Path) -> SourceFile:
    """Check one background file (see :func:`_open_tree`), count its entries, hash it."""
    handle, tree = _open_tree(path)
    try:
        entries = int(tree.num_entries)
    finally:
        handle.close()
    if entries < 0:
        raise ImportSourceError(f"'{path}': tree '{TREE}' records {entries} entries: damaged")
    return SourceFile(path, _sha256(path), entries, path.stat().st_size)


def digits_to_events(
    counts: np.ndarray,
    sensor_id: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    charge: np.ndarray,
    where: Callable[[int], str],
) -> list[SparseEvent]:
    """Pool events of a run of entries from their digit columns (counts per entry, then the
    digits of all entries, concatenated), checked and sorted by (sensor, u, v).

    Args:
        counts: digits per entry. sensor_id, u, v, charge: the members of the digits.
        where: ``where(i)`` names entry ``i`` of the run in an error (file and entry).

    Raises:
        ImportSourceError: an unknown VxdID, a pixel outside the grid, a charge of 0 or
            above 255, two digits on one pixel (names the entry and the digit).

    Example:
        >>> events = digits_to_events(
        ...     np.array([2, 0]), np.array([8480, 8480]), np.array([3, 1]), np.array([0, 7]),
        ...     np.array([40, 9]), where=lambda i: f"entry {i}")
        >>> [e.n_hits for e in events], events[0].u.tolist(), events[0].charge.tolist()
        ([2, 0], [1, 3], [9, 40])
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    # PXDDigit members are unsigned short: checked as they come (no copy); wider or signed
    # columns (another writer) as int64, so that no value wraps
    columns = [
        c if c.dtype.kind == "u" and c.dtype.itemsize <= 2 else c.astype(np.int64)
        for c in (np.asarray(x) for x in (sensor_id, u, v, charge))
    ]
    if any(c.shape != (n,) for c in columns):
        raise ImportSourceError(
            f"{where(0)}: the digit members differ in length from the digit counts: damaged"
        )
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    vxd, uu, vv, q = columns

    def refuse(bad: np.ndarray, what: Callable[[int], str], fix: str) -> None:
        if bad.any():
            k = int(np.argmax(bad))
            entry = int(np.searchsorted(offsets, k, side="right")) - 1
            raise ImportSourceError(f"{where(entry)}: digit {k - offsets[entry]} {what(k)}: {fix}")

    not_pxd = "the file is not PXD background of this detector geometry; leave it out"
    if vxd.dtype.kind == "u":
        sensor = _SENSOR_OF_VXD_ID[vxd]
    else:
        in_range = (vxd >= 0) & (vxd < 1 << 16)
        sensor = np.where(in_range, _SENSOR_OF_VXD_ID[np.where(in_range, vxd, 0)], 255)
    refuse(
        sensor == 255,
        lambda k: f"has VxdID {int(vxd[k])}{_vxd_text(int(vxd[k]))}, no PXD sensor",
        not_pxd,
    )
    refuse(
        (uu >= N_U) | (vv >= N_V) | ((uu < 0) | (vv < 0) if uu.dtype.kind == "i" else False),
        lambda k: f"is on pixel (u {int(uu[k])}, v {int(vv[k])}), outside the {N_U} x {N_V} grid",
        not_pxd,
    )
    refuse(
        q <= 0,
        lambda k: f"has charge {int(q[k])}",
        "a fired pixel has a charge of 1 ADU or more; the file is damaged",
    )
    refuse(
        q > MAX_POOL_CHARGE,
        lambda k: (
            f"has charge {int(q[k])} ADU, above the {MAX_POOL_CHARGE} a pool stores (8-bit ADC)"
        ),
        "the file holds no PXD digits in ADU; leave it out",
    )
    entry_of = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    cell = (
        entry_of * MAX_DIGITS_PER_EVENT
        + sensor.astype(np.int64) * PIXELS_PER_SENSOR
        + uu.astype(np.int64) * N_V
        + vv.astype(np.int64)
    )
    # one int64 key per digit, (entry, pixel, charge): a plain sort orders the digits of
    # each entry by pixel and keeps each charge with its pixel (5x faster than a lexsort)
    key = (cell << 8) | q.astype(np.int64)
    if n > 1 and not bool(np.all(key[1:] > key[:-1])):
        key = np.sort(key)
    sorted_cell = key >> 8
    if n > 1 and bool(np.any(sorted_cell[1:] == sorted_cell[:-1])):  # name the first duplicate
        order = np.argsort(cell, kind="stable")
        dup = np.zeros(n, dtype=bool)
        dup[order[1:]] = cell[order[1:]] == cell[order[:-1]]
        refuse(
            dup,
            lambda k: (
                f"is a second digit on pixel (sensor {SENSOR_NAMES[int(sensor[k])]}, "
                f"u {int(uu[k])}, v {int(vv[k])})"
            ),
            "the digits of one event are unique per pixel; the file is damaged",
        )
    sorted_pixel = (sorted_cell % MAX_DIGITS_PER_EVENT).astype(np.uint32)
    sorted_charge = (key & 0xFF).astype(np.uint8)
    return [
        SparseEvent.from_pixel_index(
            sorted_pixel[offsets[i] : offsets[i + 1]],
            sorted_charge[offsets[i] : offsets[i + 1]],
            validate=False,
        )
        for i in range(counts.size)
    ]


def _vxd_text(vxd_id: int) -> str:
    if not 0 <= vxd_id < 1 << 16:
        return ""
    layer, ladder, sensor, segment = unpack_vxd_id(vxd_id)
    return f" (layer {layer}, ladder {ladder}, sensor {sensor}, segment {segment})"


#: Sensor names ``layer.ladder.sensor`` by index, as basf2 prints a VxdID.
SENSOR_NAMES = tuple(
    f"{(int(i) >> 13) & 7}.{(int(i) >> 8) & 31}.{(int(i) >> 5) & 7}" for i in VXD_IDS
)


class OverlayFileReader:
    """The events of background overlay files, by global entry index (their order).

    ``events(keys)`` reads the keys' entries (``key.index`` is the position over all
    files), so it stands where a generator stands in a build (:func:`bgcache.build.
    build_inline`); one open file at a time.
    """

    def __init__(self, sources: Sequence[SourceFile]) -> None:
        self.sources = list(sources)
        self.starts = np.zeros(len(self.sources) + 1, dtype=np.int64)
        np.cumsum([s.entries for s in self.sources], out=self.starts[1:])
        self._open: tuple[int, Any, Any] | None = None
        self.read_seconds = 0.0

    @property
    def n_events(self) -> int:
        """Entries of all files."""
        return int(self.starts[-1])

    def events(self, keys: Sequence[EventKey]) -> list[SparseEvent]:
        """The events of these keys (consecutive runs of indices are read together)."""
        out: list[SparseEvent] = []
        i = 0
        while i < len(keys):
            j = i + 1
            while j < len(keys) and keys[j].index == keys[j - 1].index + 1:
                j += 1
            out.extend(self.read(keys[i].index, keys[j - 1].index + 1))
            i = j
        return out

    def read(self, start: int, stop: int) -> list[SparseEvent]:
        """The events of global entries ``start .. stop - 1``."""
        if not 0 <= start <= stop <= self.n_events:
            raise UsageError(f"entries {start}..{stop - 1} are outside 0..{self.n_events - 1}")
        t0 = time.perf_counter()
        out: list[SparseEvent] = []
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for f in range(first, len(self.sources)):
            lo, hi = max(start, int(self.starts[f])), min(stop, int(self.starts[f + 1]))
            if lo >= stop:
                break
            if lo < hi:
                base = int(self.starts[f])
                out.extend(self._read_file(f, lo - base, hi - base))
        self.read_seconds += time.perf_counter() - t0
        return out

    def _tree(self, f: int) -> Any:
        if self._open is None or self._open[0] != f:
            self.close()
            handle, tree = _open_tree(self.sources[f].path)
            self._open = (f, handle, tree)
        return self._open[2]

    def _read_file(self, f: int, lo: int, hi: int) -> list[SparseEvent]:
        source = self.sources[f]
        tree = self._tree(f)

        def where(i: int) -> str:
            return f"'{source.path}' entry {lo + i}"

        if int(tree.num_entries) != source.entries:
            raise ImportSourceError(
                f"'{source.path}' now has {tree.num_entries} entries, it had {source.entries} "
                "when the import began: the file changed; run the import again"
            )
        names = [f"{BRANCH}.{m}" for m in MEMBERS]
        try:
            import awkward as ak

            arrays = tree.arrays(names, entry_start=lo, entry_stop=hi, library="ak")
            columns = [arrays[name] for name in names]
            counts = ak.to_numpy(ak.num(columns[0], axis=1))
            flat = [ak.to_numpy(ak.flatten(c, axis=1)) for c in columns]
        except BgcacheError:
            raise
        except Exception as exc:  # decompression, deserialisation, I/O: a damaged file
            raise ImportSourceError(
                f"'{source.path}' entries {lo}..{hi - 1} cannot be read ({_reason(exc)}): the "
                "file is damaged; copy it again"
            ) from None
        for name, column in zip(names[1:], columns[1:], strict=True):
            if not np.array_equal(ak.to_numpy(ak.num(column, axis=1)), counts):
                raise ImportSourceError(
                    f"{where(0)}: member {name} has another number of digits than "
                    f"{names[0]}: the file is damaged"
                )
        for name, column in zip(names, flat, strict=True):
            if not np.issubdtype(column.dtype, np.integer):
                raise ImportSourceError(
                    f"'{source.path}': {name} holds {column.dtype}, not integers: it is not "
                    f"{DIGIT_CLASS} as basf2 writes it"
                )
        sensor_id, u, v, charge = flat
        return digits_to_events(counts, sensor_id, u, v, charge, where=where)

    def close(self) -> None:
        """Close the open file."""
        if self._open is not None:
            self._open[1].close()
            self._open = None


def import_content(sources: Sequence[SourceFile], seed: int) -> dict[str, Any]:
    """The content record of a pool of these files' events under ``seed``."""
    return {
        "model": IMPORTED_MODEL,
        "source": SOURCE,
        "tree": TREE,
        "branch": BRANCH,
        "seed": seed,
        "events": int(sum(s.entries for s in sources)),
        "files": [s.record() for s in sources],
        "physics_model": True,
        "importer": f"bgcache {__version__}",
    }


def check_import_content(url: str, recorded: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse an import into a pool whose content is not the same import.

    The identity is the sequence of (sha256, entries) and the seed; file names may differ
    (files moved or copied).

    Raises:
        PoolMismatchError: a pool of generated events, or of other files or another seed.
    """
    if recorded.get("model") != IMPORTED_MODEL:
        raise PoolMismatchError(
            f"pool '{url}' holds generated {recorded.get('model')} events: imported events go "
            "into a pool of their own; import into a new pool"
        )
    if recorded.get("seed") != new["seed"]:
        raise PoolMismatchError(
            f"pool '{url}' holds this import under seed {recorded.get('seed')}, not "
            f"{new['seed']}: use --seed {recorded.get('seed')} (a pool holds one import once)"
        )
    have = recorded.get("files")
    if not isinstance(have, list):
        raise PoolMismatchError(f"pool '{url}' records no source files: it is not an import")
    ident = [(f.get("sha256"), f.get("entries")) if isinstance(f, dict) else None for f in have]
    want = [(f["sha256"], f["entries"]) for f in new["files"]]
    if ident != want:
        first = next(
            (i for i, (a, b) in enumerate(zip(ident, want, strict=False)) if a != b),
            min(len(ident), len(want)),
        )
        if first < min(len(ident), len(want)):
            name = new["files"][first]["name"]
            diff = f"file {first + 1} ('{name}') is not the pool's file {first + 1}"
        else:
            diff = f"the pool holds {len(ident)} files, this import gives {len(want)}"
        raise PoolMismatchError(
            f"pool '{url}' holds an import of other files ({diff}): give the same files in the "
            "same order to resume, or import into a new pool"
        )


def import_pool(
    pool: str | os.PathLike[str] | Storage,
    files: Iterable[str | os.PathLike[str]],
    *,
    seed: int = 0,
    block_events: int | None = None,
    shard: str | tuple[int, int] | None = None,
    resume: bool = True,
    progress: Progress | None = None,
    on_scan: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Import the PXD digits of background overlay files into a pool (``bgcache import``).

    Args:
        pool: the pool location (created if absent; an existing one must hold this import).
        files: the ROOT files in order; a directory stands for its ``*.root`` files.
        seed: the stream's seed: keys are ``(seed, entry position over the files)``.
        block_events: events per block of a new pool (default 256).
        shard: ``"k/N"`` or ``(k, N)``: import only the k-th (0-based) of N parts.
        resume: skip complete blocks (default); False refuses if any is complete.
        progress: called as ``progress(done, total)`` in events.
        on_scan: called as ``on_scan(files checked, files)`` while the files are checked.

    Returns:
        A :class:`~bgcache.block_tasks.BuildResult` (``model`` is ``"imported"``;
        ``generate_seconds`` is the time reading the files).

    Raises:
        UsageError: bad arguments or paths. MissingDependencyError: no uproot.
        ImportSourceError: a file that cannot be imported (names it, and the entry).
        PoolMismatchError: the pool holds generated events or another import.
    """
    t_start = time.perf_counter()
    seed = validate_seed(seed)
    if block_events is not None and (
        isinstance(block_events, bool)
        or not isinstance(block_events, int)
        or not 1 <= block_events <= MAX_BLOCK_EVENTS
    ):
        raise UsageError(
            f"block_events must be an integer in 1..{MAX_BLOCK_EVENTS}, got {block_events!r}"
        )
    shard_kn = parse_shard(shard)
    paths = expand_sources(files)
    _uproot()
    storage = open_storage(pool)
    existing = check_build_location(storage)
    if existing is not None and existing["content"].get("model") != IMPORTED_MODEL:
        check_import_content(storage.url, existing["content"], {"seed": seed, "files": []})
    t0 = time.perf_counter()
    sources = []
    for i, path in enumerate(paths):
        sources.append(scan_source(path))
        if on_scan is not None:
            on_scan(i + 1, len(paths))
    scan_seconds = time.perf_counter() - t0
    content = import_content(sources, seed)
    if existing is not None:
        check_import_content(storage.url, existing["content"], content)
    total = content["events"]
    if total == 0:
        raise ImportSourceError(
            f"the {len(sources)} background files hold no entries: nothing to import"
        )
    validate_index(total - 1)
    held = Layout.from_dict(existing["layout"]) if existing is not None else None
    layout: Layout | None = None  # an existing pool keeps its layout
    if held is None:
        layout = Layout(block_events or DEFAULT_BLOCK_EVENTS)
    elif block_events is not None:
        layout = Layout(block_events, held.chunk_hits, held.compression)  # refused if other
    effective = layout or held
    assert effective is not None
    first, last = block_range(0, total, effective.block_events, shard_kn)
    if last - first > MAX_BUILD_BLOCKS:  # entry counts are the files' word: bound the plan
        raise ImportSourceError(
            f"the background files record {total:,} entries, {last - first:,} blocks for one "
            f"import (at most {MAX_BUILD_BLOCKS:,}): import them in parts with --shard K/N"
        )
    hints = {"source_paths": [str(s.path.resolve()) for s in sources]}
    target = create_or_open_pool(storage, content, layout, hints=hints)
    check_import_content(storage.url, target.record["content"], content)  # a racing creator
    B = target.layout.block_events
    result = BuildResult(
        pool=storage.url,
        model=IMPORTED_MODEL,
        seed=seed,
        first_index=0,
        stop_index=total,
        shard=shard_kn,
        block_events=B,
        load_seconds=scan_seconds,
    )
    todo, planned = plan_todo(target, result, seed, 0, total, shard_kn, resume=resume)
    reader = OverlayFileReader(sources)
    run = BuildRun(
        url=storage.url,
        options={},
        todo=todo,
        batch=B,
        result=result,
        progress=progress,
        done=0,
        total=planned,
    )
    try:
        run_blocks(target, run, lambda: build_inline(run, target, reader))
    finally:
        reader.close()
    result.seconds = time.perf_counter() - t_start
    return result


__all__ = [
    "BRANCH",
    "MEMBERS",
    "TREE",
    "OverlayFileReader",
    "SourceFile",
    "check_import_content",
    "digits_to_events",
    "expand_sources",
    "import_content",
    "import_pool",
    "scan_source",
]
