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
rules hold: a refused file leaves the blocks before it complete and nothing else, and a new
pool is created only once its first block is read and checked, so that a file refused there
leaves no pool behind; an error after that says what the pool keeps): a VxdID
that is not one of the 40 PXD sensors, a pixel outside the 250 x 768 grid, a charge of 0 or
above 255 (the pool stores 8-bit ADU), two digits on one pixel. Digits are sorted by
(sensor, u, v), as every pool event is.

Memory stays bounded whatever a file holds (a file's numbers are its word, and ROOT compresses
identical digits ~7000x, so a 150 kB file can hold 128 million digits). The digit counts
(the branch ``PXDDigits`` itself, one int32 an entry) are read first, while the files are
checked: an entry above :data:`MAX_DIGITS_PER_EVENT` (one digit per pixel) is refused, and so
is a block above :data:`MAX_BLOCK_DIGITS`, the memory budget of one block, before any pool
exists. The digits are then read in pieces of whole entries of about :data:`PIECE_DIGITS`
digits, one member at a time, and a piece is read only when the baskets it needs decompress to
no more than its digits take (plus :data:`READ_SLACK_BYTES`). The files are read with pread,
not a memory map (its pages would count as the import's memory as they are read). An import
peaks at ~35 bytes a digit of its blocks: 0.6 GB for real-size events in blocks of 256 (it
read whole blocks at once before: 1.27 GB), 1.0 GB for blocks near the budget (measured in
``docs/performance.md``, ``benchmarks/import_memory.py``).

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
    ImportSourceError,
    MissingDependencyError,
    PoolMismatchError,
    UsageError,
)
from bgcache.geometry import N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR, VXD_IDS, unpack_vxd_id
from bgcache.hits import SparseEvent
from bgcache.seeding import EventKey, validate_index, validate_seed
from bgcache.store.format import DEFAULT_BLOCK_EVENTS, MAX_BLOCK_EVENTS, Layout
from bgcache.store.pool import Pool, open_storage
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
#: Digits in one event at most (every pixel of the PXD once): 7,680,000.
MAX_DIGITS_PER_EVENT = N_SENSORS * PIXELS_PER_SENSOR
#: Digits one block of an import may hold: the import's memory budget. A block's events take
#: 6 bytes a digit, and an import holds up to three blocks (one read, one queued, one written,
#: ~15 bytes a digit more while it is packed and compressed). Measured peaks, ~35 bytes a digit
#: of a block: 0.6 GB for blocks of 256 real-size events (~69,000 digits each, 0.9 % of the
#: pixels: 17.7 million a block), 1.0 GB for blocks of 4 entries of every pixel (30.7 million).
MAX_BLOCK_DIGITS = 1 << 25
#: Digits read and checked at once: whole entries, up to this many (an entry with more is read
#: alone; it holds at most MAX_DIGITS_PER_EVENT).
PIECE_DIGITS = 1 << 22
#: Entries whose digit counts are read at once while the files are checked.
COUNTS_CHUNK = 1 << 20
#: Bytes a read may decompress beyond what its digits take (baskets that begin before or end
#: after its entries, headers); a file needing more is refused as damaged.
READ_SLACK_BYTES = 64 << 20

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

    A file is itself, not its name: one given twice under two names (a hard link, a symbolic
    link, ``./a`` and ``a``) is refused, as its events would be imported twice.

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
    seen: dict[tuple[int, int], Path] = {}
    for path in out:
        st = path.stat()
        if (st.st_dev, st.st_ino) in seen:
            other = seen[st.st_dev, st.st_ino]
            how = "" if other.resolve() == path.resolve() else ", the same file under another name"
            # (a hard link; a symbolic link resolves to the other path)
            raise UsageError(
                f"background file '{path}' is given twice (also as '{other}'{how}): "
                "each file's events would be imported twice; give it once"
            )
        seen[st.st_dev, st.st_ino] = path
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
        # no array cache: each entry is read once, and a cache would hold up to 100 MB; read
        # with pread, not a memory map, whose pages count as the job's resident memory as they
        # are read (an 822 MB file of dense events: peak 1.87 GB mapped, 1.08 GB read)
        handle = uproot.open(path, handler=uproot.MultithreadedFileSource, array_cache=None)
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
    for name, jagged in [(BRANCH, False), *((f"{BRANCH}.{m}", True) for m in MEMBERS)]:
        if _integer_type(tree[name], jagged=jagged) is None:
            handle.close()
            kind = "an integer per digit" if jagged else "one integer per entry (the digit count)"
            raise ImportSourceError(
                f"'{path}': branch {name} holds {tree[name].interpretation}, not {kind}: it is "
                f"not {DIGIT_CLASS} as basf2 writes it"
            )
    return handle, tree


def _integer_type(branch: Any, *, jagged: bool) -> np.dtype[Any] | None:
    """The integer type a branch holds (one per entry, or a jagged list per entry), else None."""
    interpretation = branch.interpretation
    if jagged:
        if type(interpretation).__name__ != "AsJagged":
            return None
        interpretation = interpretation.content
    dtype = getattr(interpretation, "from_dtype", None)
    if type(interpretation).__name__ != "AsDtype" or not isinstance(dtype, np.dtype):
        return None
    return dtype if dtype.kind in "iu" and dtype.shape == () else None


def _basket_bytes(branch: Any, lo: int, hi: int) -> int:
    """Bytes the baskets holding entries ``lo .. hi - 1`` of a branch decompress to (their
    headers say so; uproot allocates what they say)."""
    offsets = np.asarray(branch.entry_offsets, dtype=np.int64)
    needed = np.flatnonzero((offsets[:-1] < hi) & (offsets[1:] > lo))
    return sum(int(branch.basket_uncompressed_bytes(int(k))) for k in needed)


def _read_branch(
    branch: Any, path: Path, lo: int, hi: int, values: int, itemsize: int, library: str
) -> Any:
    """Entries ``lo .. hi - 1`` of a branch, read only if its baskets decompress to no more
    than ``values`` of ``itemsize`` bytes take (with entry offsets, headers and
    :data:`READ_SLACK_BYTES` of neighbouring entries).

    Raises:
        ImportSourceError: the baskets would take more (a damaged or hostile file), or the
            read fails (decompression, deserialisation: a damaged file).
    """
    try:
        claimed = _basket_bytes(branch, lo, hi)
    except Exception as exc:  # uproot raises ValueError, KeyError... for damaged baskets
        raise _unreadable(path, lo, hi, exc) from None
    bound = itemsize * values + 8 * (hi - lo) + READ_SLACK_BYTES
    if claimed > bound:
        raise ImportSourceError(
            f"'{path}' entries {lo}..{hi - 1}: the baskets of {branch.name} claim {claimed:,} "
            f"bytes, more than the {values:,} values they hold can take ({bound:,} with "
            "headers): the file is damaged; copy it again"
        )
    try:
        return branch.array(entry_start=lo, entry_stop=hi, library=library)
    except Exception as exc:  # decompression, deserialisation, I/O: a damaged file
        raise _unreadable(path, lo, hi, exc) from None


def _unreadable(path: Path, lo: int, hi: int, exc: BaseException) -> ImportSourceError:
    return ImportSourceError(
        f"'{path}' entries {lo}..{hi - 1} cannot be read ({_reason(exc)}): the file is "
        "damaged; copy it again"
    )


def entry_counts(tree: Any, path: Path, lo: int, hi: int) -> np.ndarray:
    """The digit counts of entries ``lo .. hi - 1`` (int64), each checked against the pixels
    of the PXD; read from the branch ``PXDDigits`` (one int32 an entry) before any digit.

    Raises:
        ImportSourceError: an entry with a negative count or more digits than
            :data:`MAX_DIGITS_PER_EVENT` (names the file, the entry and the count), or a
            damaged branch.
    """
    branch = tree[BRANCH]
    dtype = _integer_type(branch, jagged=False)
    itemsize = 8 if dtype is None else dtype.itemsize  # checked when the file was opened
    counts = _read_branch(branch, path, lo, hi, hi - lo, itemsize, "np")
    if not isinstance(counts, np.ndarray) or counts.shape != (hi - lo,):
        raise ImportSourceError(
            f"'{path}' entries {lo}..{hi - 1}: branch {BRANCH} does not hold one digit count "
            "per entry: the file is damaged"
        )
    counts = counts.astype(np.int64)
    bad = np.flatnonzero((counts < 0) | (counts > MAX_DIGITS_PER_EVENT))
    if bad.size:
        i = int(bad[0])
        raise ImportSourceError(
            f"'{path}' entry {lo + i} records {int(counts[i]):,} digits, and an event holds at "
            f"most {MAX_DIGITS_PER_EVENT:,} (one per pixel of the 40 PXD sensors): the file is "
            "damaged or not PXD background; leave it out"
        )
    return counts


class BlockDigits:
    """The digits of each block of an import, counted over the files in order while they are
    checked: a block above :data:`MAX_BLOCK_DIGITS` is refused before anything is read or
    written.

    Example:
        >>> tally = BlockDigits(block_events=2)
        >>> tally.add(Path("run1.root"), 0, np.array([5, 7, 1]))
        >>> tally.add(Path("run2.root"), 0, np.array([MAX_BLOCK_DIGITS]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bgcache.errors.ImportSourceError: 'run2.root' entries 0..0 (with the entry before them): \
33,554,433 digits in one block of 2 events, above the 33,554,432 an import holds per block ...
    """

    def __init__(self, block_events: int) -> None:
        self.block_events = block_events
        self.entries = 0  # entries counted so far, over all files
        self.carry = 0  # digits of the block that the next entry belongs to, counted so far

    def add(self, path: Path, lo: int, counts: np.ndarray) -> None:
        """Count the digits of entries ``lo ..`` of ``path`` (the next entries of the import).

        Raises:
            ImportSourceError: a block holds more than :data:`MAX_BLOCK_DIGITS` digits.
        """
        B, n = self.block_events, int(counts.size)
        if not n:
            return
        before = self.entries % B  # entries of the first block counted before these
        starts = np.arange((B - before) % B, n, B, dtype=np.int64)
        if not starts.size or starts[0]:
            starts = np.concatenate([[0], starts])
        sums = np.add.reduceat(counts.astype(np.int64), starts)
        sums[0] += self.carry
        over = np.flatnonzero(sums > MAX_BLOCK_DIGITS)
        if over.size:
            k = int(over[0])
            a = int(starts[k])
            b = int(starts[k + 1]) if k + 1 < starts.size else n
            earlier = before if k == 0 else 0
            raise _block_over_budget(
                path, lo + a, lo + b, int(sums[k]), b - a + earlier, earlier, B
            )
        self.entries += n
        self.carry = int(sums[-1]) if self.entries % B else 0


def _block_over_budget(
    path: Path, lo: int, hi: int, digits: int, entries: int, earlier: int, block_events: int
) -> ImportSourceError:
    """The refusal of a block above :data:`MAX_BLOCK_DIGITS`: entries ``lo .. hi - 1`` of
    ``path`` and ``earlier`` entries before them hold ``digits``."""
    fit = max(1, MAX_BLOCK_DIGITS * entries // digits)
    suggest = min(1 << (fit.bit_length() - 1), max(1, block_events // 2))
    with_earlier = ""
    if earlier:
        with_earlier = (
            " (with the entry before them)"
            if earlier == 1
            else f" (with the {earlier:,} entries before them)"
        )
    return ImportSourceError(
        f"'{path}' entries {lo}..{hi - 1}{with_earlier}: {digits:,} digits in one block of "
        f"{block_events} events, above the {MAX_BLOCK_DIGITS:,} an import holds per block (its "
        f"memory budget): import into a new pool with smaller blocks, e.g. --block-events {suggest}"
    )


def _member(branch: Any, name: str) -> Any:
    try:
        return branch.member(name)
    except Exception:
        return None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def scan_source(path: Path, tally: BlockDigits | None = None) -> SourceFile:
    """Check one background file (see :func:`_open_tree`), count its entries and their
    digits (:func:`entry_counts`, counted into ``tally`` when given), hash it."""
    handle, tree = _open_tree(path)
    try:
        entries = int(tree.num_entries)
        if entries < 0:
            raise ImportSourceError(f"'{path}': tree '{TREE}' records {entries} entries: damaged")
        for lo in range(0, entries, COUNTS_CHUNK):
            counts = entry_counts(tree, path, lo, min(entries, lo + COUNTS_CHUNK))
            if tally is not None:
                tally.add(path, lo, counts)
    finally:
        handle.close()
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
    # one uint64 key per digit, (entry, pixel, charge): a plain sort orders the digits of
    # each entry by pixel and keeps each charge with its pixel (5x faster than a lexsort).
    # pixel << 8 | charge < 2**31, so the entry goes above bit 31; built in place, 8 bytes a
    # digit and few temporaries (the memory of an import per digit, see MAX_BLOCK_DIGITS)
    low = sensor.astype(np.uint32)
    low *= PIXELS_PER_SENSOR
    low += uu.astype(np.uint32) * N_V
    low += vv.astype(np.uint32, copy=False)
    low <<= 8
    low |= q.astype(np.uint32, copy=False)
    key = np.repeat(np.arange(counts.size, dtype=np.uint64) << 31, counts)
    key |= low
    del low
    if n > 1 and not bool(np.all(key[1:] > key[:-1])):
        key.sort()
    if n > 1 and bool(np.any((key[1:] ^ key[:-1]) < 256)):  # same entry and pixel
        entry_of = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        cell = (
            entry_of * MAX_DIGITS_PER_EVENT
            + sensor.astype(np.int64) * PIXELS_PER_SENSOR
            + uu.astype(np.int64) * N_V
            + vv.astype(np.int64)
        )
        order = np.argsort(cell, kind="stable")  # name the first duplicate as given
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
    sorted_pixel = (key >> 8).astype(np.uint32)
    sorted_pixel &= (1 << 23) - 1  # a pixel index is below 7,680,000 < 2**23
    sorted_charge = key.astype(np.uint8)
    del key
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
    build_inline`). A read takes the digit counts first, refuses a block above
    :data:`MAX_BLOCK_DIGITS`, then reads the digits in pieces of about :data:`PIECE_DIGITS`.
    ``hold(start, stop)`` reads a range ahead (the first block of a new pool, before the
    pool is created); the next ``read`` of that range hands it over.
    """

    def __init__(self, sources: Sequence[SourceFile]) -> None:
        self.sources = list(sources)
        self.starts = np.zeros(len(self.sources) + 1, dtype=np.int64)
        np.cumsum([s.entries for s in self.sources], out=self.starts[1:])
        self._open: dict[int, tuple[Any, Any]] = {}
        self._held: tuple[int, int, list[SparseEvent]] | None = None
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

    def hold(self, start: int, stop: int) -> None:
        """Read the events of global entries ``start .. stop - 1`` now, for the next
        :meth:`read` of that range."""
        self._held = (start, stop, self.read(start, stop))

    def read(self, start: int, stop: int) -> list[SparseEvent]:
        """The events of global entries ``start .. stop - 1`` (a block at most: their digits
        are held at once).

        Raises:
            ImportSourceError: the entries hold more than :data:`MAX_BLOCK_DIGITS` digits, or
                what :func:`entry_counts` and :func:`digits_to_events` refuse.
        """
        held, self._held = self._held, None
        if held is not None and held[:2] == (start, stop):
            return held[2]
        if not 0 <= start <= stop <= self.n_events:
            raise UsageError(f"entries {start}..{stop - 1} are outside 0..{self.n_events - 1}")
        t0 = time.perf_counter()
        parts = []
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for f in range(first, len(self.sources)):
            lo, hi = max(start, int(self.starts[f])), min(stop, int(self.starts[f + 1]))
            if lo >= stop:
                break
            if lo < hi:
                base = int(self.starts[f])
                parts.append((f, lo - base, hi - base))
        for f in set(self._open) - {f for f, _, _ in parts}:
            self._open.pop(f)[0].close()
        counts = [entry_counts(self._tree(f), self.sources[f].path, lo, hi) for f, lo, hi in parts]
        digits, entries = 0, 0
        for (f, lo, hi), c in zip(parts, counts, strict=True):
            digits, entries = digits + int(c.sum()), entries + hi - lo
            if digits > MAX_BLOCK_DIGITS:  # the files changed since they were checked
                raise _block_over_budget(
                    self.sources[f].path, lo, hi, digits, entries, entries - hi + lo, stop - start
                )
        out: list[SparseEvent] = []
        for (f, lo, hi), c in zip(parts, counts, strict=True):
            out.extend(self._read_file(f, lo, hi, c))
        self.read_seconds += time.perf_counter() - t0
        return out

    def _tree(self, f: int) -> Any:
        if f not in self._open:
            handle, tree = _open_tree(self.sources[f].path)
            self._open[f] = (handle, tree)
            if int(tree.num_entries) != self.sources[f].entries:
                raise ImportSourceError(
                    f"'{self.sources[f].path}' now has {tree.num_entries} entries, it had "
                    f"{self.sources[f].entries} when the import began: the file changed; run "
                    "the import again"
                )
        return self._open[f][1]

    def _read_file(self, f: int, lo: int, hi: int, counts: np.ndarray) -> list[SparseEvent]:
        """The events of entries ``lo .. hi - 1`` of file ``f`` whose digit counts are
        ``counts``, read in pieces of whole entries of up to :data:`PIECE_DIGITS` digits."""
        out: list[SparseEvent] = []
        ends = np.cumsum(counts)
        a = 0
        while a < counts.size:
            done = int(ends[a - 1]) if a else 0
            b = max(a + 1, int(np.searchsorted(ends, done + PIECE_DIGITS, side="right")))
            out.extend(self._read_piece(f, lo + a, lo + b, counts[a:b]))
            a = b
        return out

    def _read_piece(self, f: int, lo: int, hi: int, counts: np.ndarray) -> list[SparseEvent]:
        import awkward as ak

        path = self.sources[f].path
        tree = self._tree(f)
        n = int(counts.sum())
        columns = []
        for member in MEMBERS:
            name = f"{BRANCH}.{member}"
            branch = tree[name]
            itemsize = branch.interpretation.content.from_dtype.itemsize
            array = _read_branch(branch, path, lo, hi, n, itemsize, "ak")
            try:
                per_entry = ak.to_numpy(ak.num(array, axis=1))
                flat = ak.to_numpy(ak.flatten(array, axis=1))
            except Exception as exc:  # not a list per entry: a damaged file
                raise _unreadable(path, lo, hi, exc) from None
            del array
            if not np.array_equal(per_entry, counts):
                bad = (
                    int(np.flatnonzero(per_entry != counts)[0])
                    if per_entry.shape == counts.shape
                    else 0
                )
                raise ImportSourceError(
                    f"'{path}' entry {lo + bad}: member {name} has another number of digits "
                    f"than the digit count {BRANCH}: the file is damaged"
                )
            columns.append(flat)
        sensor_id, u, v, charge = columns

        def where(i: int) -> str:
            return f"'{path}' entry {lo + i}"

        return digits_to_events(counts, sensor_id, u, v, charge, where=where)

    def close(self) -> None:
        """Close the open files."""
        while self._open:
            self._open.popitem()[1][0].close()


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
    held = Layout.from_dict(existing["layout"]) if existing is not None else None
    layout: Layout | None = None  # an existing pool keeps its layout
    if held is None:
        layout = Layout(block_events or DEFAULT_BLOCK_EVENTS)
    elif block_events is not None:
        layout = Layout(block_events, held.chunk_hits, held.compression)  # refused if other
    effective = held or layout
    assert effective is not None
    t0 = time.perf_counter()
    tally = BlockDigits(effective.block_events)
    sources: list[SourceFile] = []
    for i, path in enumerate(paths):
        found = scan_source(path, tally)
        same = next((s for s in sources if s.sha256 == found.sha256), None)
        if same is not None:
            raise UsageError(
                f"background files '{same.path}' and '{path}' hold the same bytes (sha256 "
                f"{found.sha256[:16]}...): one is a copy of the other, and its events would be "
                "imported twice; give it once"
            )
        sources.append(found)
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
    first, last = block_range(0, total, effective.block_events, shard_kn)
    if last - first > MAX_BUILD_BLOCKS:  # entry counts are the files' word: bound the plan
        raise ImportSourceError(
            f"the background files record {total:,} entries, {last - first:,} blocks for one "
            f"import (at most {MAX_BUILD_BLOCKS:,}): import them in parts with --shard K/N"
        )
    reader = OverlayFileReader(sources)
    try:
        if existing is None and first < last:
            # a new pool is created only once its first block is good: a refused file then
            # leaves nothing behind (blocks are invisible until complete, so the pool's
            # records would be all that is left)
            B = effective.block_events
            reader.hold(first * B, min(total, (first + 1) * B))
        held_seconds = reader.read_seconds
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
            generate_seconds=held_seconds,  # the first block's read, before the pool existed
        )
        todo, planned = plan_todo(target, result, seed, 0, total, shard_kn, resume=resume)
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
        except ImportSourceError as exc:
            raise ImportSourceError(f"{exc}{_pool_state(target)}") from None
    finally:
        reader.close()
    result.seconds = time.perf_counter() - t_start
    return result


def _pool_state(target: Pool) -> str:
    """What an import refused while it wrote leaves in its pool, for the end of its error."""
    target.refresh()
    held = (
        f"keeps its {len(target):,} complete events" if len(target) else "holds no complete block"
    )
    return (
        f" (pool '{target.url}' {held} and records these files: once the file is repaired the "
        "same command resumes it; without the file, import into a new pool)"
    )


__all__ = [
    "BRANCH",
    "MAX_BLOCK_DIGITS",
    "MAX_DIGITS_PER_EVENT",
    "MEMBERS",
    "PIECE_DIGITS",
    "TREE",
    "BlockDigits",
    "OverlayFileReader",
    "SourceFile",
    "check_import_content",
    "digits_to_events",
    "entry_counts",
    "expand_sources",
    "import_content",
    "import_pool",
    "scan_source",
]
