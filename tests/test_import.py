"""``bgcache import``: pools from background overlay ROOT files written by real ROOT.

The files are written by ROOT (the ``root`` wheel of the test extra) with the cling replica
of ``Belle2::PXDDigit`` (``tests/root_files.py``, a stand-in for basf2's class, named as
such) and read by bgcache through uproot, as on a machine without ROOT. The events written
are full-size synthetic events (~69,000 digits each), their digits shuffled within each
entry; the pool must hold them hit for hit, sorted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("uproot", reason="bgcache import needs uproot: pip install 'bgcache[uproot]'")
pytest.importorskip("ROOT", reason="writing the test files needs ROOT: pip install root")
sys.path.insert(0, str(Path(__file__).parent))
import fault_hostile
import root_files

from bgcache import load_model, open_pool
from bgcache.build import build_pool
from bgcache.errors import ImportSourceError, PoolMismatchError, UsageError
from bgcache.hits import SparseEvent
from bgcache.importer import import_pool
from bgcache.overlay import PoolOverlay
from bgcache.store.verify import verify_pool

Invoke = Callable[..., Any]

write_overlay_file = root_files.write_overlay_file
event_digits = root_files.event_digits
COMPRESSIONS = root_files.COMPRESSIONS


def synthetic_events(n: int, seed: int = 5) -> list[SparseEvent]:
    """``n`` full-size events; every third is empty (an entry without PXD digits)."""
    events = load_model("synthetic").events([(seed, i) for i in range(n)])
    return [SparseEvent.empty() if i % 3 == 1 else e for i, e in enumerate(events)]


def assert_pool_holds(pool: Path, events: list[SparseEvent], seed: int = 0) -> None:
    reader = open_pool(pool)
    assert len(reader) == len(events)
    for i, want in enumerate(events):
        got = reader.event_by_key(seed, i)
        assert got == want, f"event {i}: {got.n_hits} hits, the file's entry has {want.n_hits}"


@pytest.fixture(scope="module")
def events() -> list[SparseEvent]:
    return synthetic_events(7)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, events: list[SparseEvent]) -> list[Path]:
    """Three overlay files of 3, 0 and 4 entries (a run without events in the middle)."""
    base = tmp_path_factory.mktemp("overlay")
    parts = [events[:3], [], events[3:]]
    return [
        write_overlay_file(base / f"run{i}.root", [event_digits(e, shuffle=i) for e in part])
        for i, part in enumerate(parts)
    ]


def test_an_import_holds_every_digit_sorted(
    tmp_path: Path, files: list[Path], events: list[SparseEvent], cli: Invoke
) -> None:
    result = cli("import", str(tmp_path / "p"), *map(str, files), "--block-events", "3", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["events_written"], summary["blocks_written"], summary["model"]) == (
        7,
        3,
        "imported",
    )
    assert_pool_holds(tmp_path / "p", events)
    assert verify_pool(tmp_path / "p").ok
    pool = open_pool(tmp_path / "p")
    assert pool.imported and pool.physics_model
    content = pool.content
    assert content["events"] == 7 and content["seed"] == 0
    assert [(f["name"], f["entries"]) for f in content["files"]] == [
        ("run0.root", 3),
        ("run1.root", 0),
        ("run2.root", 4),
    ]
    import hashlib

    assert content["files"][2]["sha256"] == hashlib.sha256(files[2].read_bytes()).hexdigest()
    shown = cli("inspect", str(tmp_path / "p"))
    assert shown.exit_code == 0, shown.stderr
    assert "imported from 3 BGOverlayInput ROOT files" in shown.stdout
    assert "run2.root: 4 entries" in shown.stdout


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
@pytest.mark.parametrize("split", [99, 1])
def test_every_compression_and_split_level(
    tmp_path: Path, events: list[SparseEvent], compression: str, split: int
) -> None:
    path = write_overlay_file(
        tmp_path / "bg.root",
        [event_digits(e) for e in events[:3]],
        split=split,
        compression=COMPRESSIONS[compression],
    )
    import_pool(tmp_path / "p", [path], seed=-4)
    assert_pool_holds(tmp_path / "p", events[:3], seed=-4)


def test_a_directory_stands_for_its_root_files_sorted(
    tmp_path: Path, files: list[Path], events: list[SparseEvent]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for f in reversed(files):
        shutil.copy(f, folder / f.name)
    (folder / "notes.txt").write_text("not a ROOT file, not *.root")
    import_pool(tmp_path / "p", [folder], block_events=4)
    assert_pool_holds(tmp_path / "p", events)


def test_shards_and_a_resume_write_the_same_bytes(
    tmp_path: Path, files: list[Path], cli: Invoke, pool_files: Any
) -> None:
    whole = tmp_path / "whole"
    import_pool(whole, files, block_events=2)
    sharded = tmp_path / "sharded"
    for k in (2, 0, 1):
        r = cli(
            "import",
            str(sharded),
            *map(str, files),
            "--block-events",
            "2",
            "--shard",
            f"{k}/3",
            "-q",
        )
        assert r.exit_code == 0, r.stderr
    assert pool_files(sharded) == pool_files(whole)
    again = cli("import", str(sharded), *map(str, files), "--json")
    assert json.loads(again.stdout)["blocks_skipped"] == 4
    assert pool_files(sharded) == pool_files(whole)


def test_moved_files_resume_other_files_are_refused(
    tmp_path: Path, files: list[Path], events: list[SparseEvent], cli: Invoke
) -> None:
    pool = tmp_path / "p"
    import_pool(pool, files[:2])
    moved = tmp_path / "moved.root"
    shutil.copy(files[1], moved)
    assert import_pool(pool, [files[0], moved]).blocks_skipped == 1  # same bytes, other name
    for argv, match in [
        ([files[0], files[2]], "file 2 .'run2.root'. is not the pool's file 2"),
        (files, "the pool holds 2 files, this import gives 3"),
        ([files[1], files[0]], "file 1 .'run1.root'. is not the pool's file 1"),
    ]:
        r = cli("import", str(pool), *map(str, argv))
        assert r.exit_code == 1
        assert "holds an import of other files" in r.stderr and len(r.stderr.splitlines()) == 1
        assert __import__("re").search(match, r.stderr), r.stderr
    r = cli("import", str(pool), *map(str, files[:2]), "--seed", "3")
    assert r.exit_code == 1 and "under seed 0, not 3: use --seed 0" in r.stderr
    r = cli("build", str(pool), "-m", "synthetic", "-n", "4")
    assert r.exit_code == 1 and "holds imported background events" in r.stderr
    build_pool(tmp_path / "gan", model="synthetic", events=2)
    with pytest.raises(PoolMismatchError, match="holds generated synthetic events"):
        import_pool(tmp_path / "gan", files)
    assert_pool_holds(pool, events[:3])


def test_the_overlay_draws_imported_events_and_never_generates(
    tmp_path: Path, files: list[Path], events: list[SparseEvent]
) -> None:
    pool = tmp_path / "p"
    import_pool(pool, files)
    with pytest.raises(
        UsageError, match="no generator can make more of: choose on_exhausted='reuse'"
    ):
        PoolOverlay(pool)
    with PoolOverlay(pool, seed=1, njobs=2, job=1, on_exhausted="reuse") as overlay:
        drawn = [(overlay.next_event(), overlay.last) for _ in range(5)]
    assert overlay.stats.from_pool == 4 and overlay.stats.reused == 1  # the share: 3..6
    for event, (_, key) in drawn:
        assert event == events[key.index]


# -- what is refused --------------------------------------------------------------------------


def _one_event(**change: Any) -> list[root_files.Digits]:
    """One entry of three digits on sensor 1.1.1, with one field of digit 1 changed."""
    vxd, u, v, q = [8480, 8480, 8480], [0, 5, 7], [1, 2, 3], [10, 20, 30]
    columns = {"vxd": vxd, "u": u, "v": v, "q": q}
    for name, value in change.items():
        columns[name][1] = value
    good = ([8480], [1], [1], [9])
    return [good, (columns["vxd"], columns["u"], columns["v"], columns["q"])]


BAD_DIGITS = {
    "vxd-unknown": (
        _one_event(vxd=8480 + 8 * 256),
        "entry 1: digit 1 has VxdID 10528 (layer 1, ladder 9, sensor 1, segment 0), no PXD sensor",
    ),
    "vxd-segment": (
        _one_event(vxd=8481),
        "VxdID 8481 (layer 1, ladder 1, sensor 1, segment 1), no PXD sensor",
    ),
    "u-out": (
        _one_event(u=250),
        "entry 1: digit 1 is on pixel (u 250, v 2), outside the 250 x 768 grid",
    ),
    "v-out": (_one_event(v=768), "is on pixel (u 5, v 768), outside the 250 x 768 grid"),
    "charge-0": (_one_event(q=0), "entry 1: digit 1 has charge 0: a fired pixel"),
    "charge-256": (_one_event(q=256), "has charge 256 ADU, above the 255 a pool stores"),
    "duplicate": (_one_event(u=0, v=1), "is a second digit on pixel (sensor 1.1.1, u 0, v 1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_DIGITS))
def test_bad_digits_are_refused_naming_file_and_entry(
    tmp_path: Path, cli: Invoke, case: str
) -> None:
    entries, message = BAD_DIGITS[case]
    good = write_overlay_file(tmp_path / "good.root", [([8480], [3], [4], [5])] * 2)
    bad = write_overlay_file(tmp_path / "bad.root", entries)
    pool = tmp_path / "p"
    r = cli("import", str(pool), str(good), str(bad), "--block-events", "2")
    assert r.exit_code == 1, r.stdout
    lines = r.stderr.splitlines()  # the bar had started: no frame of it (nor a blank line)
    assert len(lines) == 1 and lines[0].startswith("bgcache: error: "), r.stderr
    assert f"'{bad}' {message}" in lines[0] if "entry 1" in message else message in lines[0]
    assert "Traceback" not in r.stderr
    # the block before the bad entry is complete, and the error says so; the refused block
    # left nothing
    assert f"(pool '{pool}' keeps its 2 complete events and records these files" in lines[0]
    reader = open_pool(pool)
    assert len(reader) == 2 and verify_pool(pool).ok
    assert not list(pool.rglob("*.partial"))


def test_a_refused_first_block_leaves_no_pool(tmp_path: Path, cli: Invoke) -> None:
    """A new pool is created only once its first block is good: a refused file leaves no pool
    holding only its root record behind, an empty directory given as the pool stays empty, and
    an existing pool loses nothing (the error says what it keeps)."""
    bad = write_overlay_file(tmp_path / "bad.root", _one_event(q=0))
    empty = tmp_path / "empty"
    empty.mkdir()
    for pool in (tmp_path / "p", empty):
        r = cli("import", str(pool), str(bad))  # no --quiet: the error is the only line
        assert r.exit_code == 1 and r.stdout == ""
        assert r.stderr.splitlines() == [
            f"bgcache: error: '{bad}' entry 1: digit 1 has charge 0: a fired pixel has a charge "
            "of 1 ADU or more; the file is damaged"
        ]
    assert not (tmp_path / "p").exists() and list(empty.iterdir()) == []
    good = write_overlay_file(tmp_path / "good.root", [([8480], [3], [4], [5])] * 2)
    pool = tmp_path / "kept"
    import_pool(pool, [good, bad], block_events=2, shard=(0, 2))
    before = {p: p.read_bytes() for p in pool.rglob("*") if p.is_file()}
    r = cli("import", str(pool), str(good), str(bad), "-q")
    assert r.exit_code == 1 and "entry 1: digit 1 has charge 0" in r.stderr
    assert f"(pool '{pool}' keeps its 2 complete events" in r.stderr
    after = {p: p.read_bytes() for p in pool.rglob("*") if p.is_file()}
    assert after.keys() == before.keys()  # the root record's summary may be rewritten
    assert all(after[p] == before[p] for p in before if p.name != "zarr.json" or p.parent != pool)


def test_one_file_under_two_names_is_refused(
    tmp_path: Path, files: list[Path], cli: Invoke
) -> None:
    """A file is itself, not its path: a hard link, a symbolic link or a byte-identical copy
    given beside it would import its events twice (a hard link did: 16 events from 8)."""
    link, sym, copy = tmp_path / "link.root", tmp_path / "sym.root", tmp_path / "copy.root"
    os.link(files[0], link)
    sym.symlink_to(files[0])
    shutil.copy(files[0], copy)
    import hashlib

    sha = hashlib.sha256(files[0].read_bytes()).hexdigest()
    for other, message in [
        (link, f"'{link}' is given twice (also as '{files[0]}', the same file under another name)"),
        (sym, f"'{sym}' is given twice (also as '{files[0]}'): "),
        (copy, f"'{files[0]}' and '{copy}' hold the same bytes (sha256 {sha[:16]}...)"),
    ]:
        r = cli("import", str(tmp_path / "p"), str(files[0]), str(files[2]), str(other))
        assert r.exit_code == 2, r.stderr
        assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
        assert "imported twice; give it once" in r.stderr
    assert not (tmp_path / "p").exists()


def _truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def _damage_basket(path: Path) -> None:
    """Flip a byte inside the compressed data of the first basket of the charges (zlib: its
    checksum fails)."""
    import uproot

    with uproot.open(path) as f:
        branch = f["tree"]["PXDDigits.m_charge"]
        seek = int(branch.member("fBasketSeek")[0])
        key = branch.basket_key(0)
        start, size = seek + key.fKeylen, key.data_compressed_bytes
    data = bytearray(path.read_bytes())
    data[start + size // 2] ^= 0x55
    path.write_bytes(bytes(data))


BAD_FILES = {
    "not-root": ("text", "is not a ROOT file (it does not start with 'root')"),
    "empty": ("empty", "is not a ROOT file (it does not start with 'root')"),
    "header-only": ("header", "cannot be read as a ROOT file"),
    "truncated": ("truncate", "cannot be read as a ROOT file"),
    "damaged-basket": ("damage", "entries 0..49 cannot be read ("),
    "other-class": (
        {"clones_class": "Belle2::BackgroundInfo"},
        "branch 'PXDDigits' holds Belle2::BackgroundInfo, not Belle2::PXDDigit",
    ),
    "no-branch": ({"branch": "SVDShaperDigits"}, "has no branch 'PXDDigits' in tree 'tree'"),
    "no-tree": ({"tree_name": "persistent"}, "has no TTree 'tree': it is not a basf2 output file"),
    "mixing": ({"extra_branch": "BackgroundMetaData"}, "is a BG mixing sample"),
    "unsplit": ({"split": 0}, "is stored unsplit (splitLevel 0)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_before_anything_is_written(
    tmp_path: Path, cli: Invoke, case: str
) -> None:
    how, message = BAD_FILES[case]
    path = tmp_path / "bad.root"
    if how == "text":
        path.write_text("run,event\n1,2\n")
    elif how == "empty":
        path.write_bytes(b"")
    else:
        entries = (
            [] if isinstance(how, dict) and "clones_class" in how else [([8480], [1], [2], [3])]
        )
        write_overlay_file(path, entries * 50, **(how if isinstance(how, dict) else {}))
        if how in ("truncate", "header"):
            _truncate(path, keep=300 if how == "header" else None)
        if how == "damage":
            _damage_basket(path)
    r = cli("import", str(tmp_path / "p"), str(path))
    assert r.exit_code == 1
    assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
    assert str(path) in r.stderr
    assert not (tmp_path / "p").exists()


def test_paths_are_checked_first(tmp_path: Path, cli: Invoke, files: list[Path]) -> None:
    (tmp_path / "empty").mkdir()
    for argv, match in [
        ([str(tmp_path / "nope.root")], "does not exist"),
        ([str(tmp_path / "empty")], "holds no *.root files"),
        ([str(files[0]), str(files[0])], "is given twice"),
    ]:
        r = cli("import", str(tmp_path / "p"), *argv)
        assert r.exit_code == 2 and match in r.stderr, r.stderr
    with pytest.raises(ImportSourceError, match="hold no entries"):
        import_pool(tmp_path / "p", [files[1]])
    assert not (tmp_path / "p").exists()


# -- files whose numbers would take the machine's memory ----------------------------------------

#: identical digits an entry: ROOT compresses them ~7000x (the probe's file: 64 such entries,
#: 146 kB, ended in a MemoryError at 3.5 GB, the importer read a block's columns whole)
BOMB_DIGITS = 2_000_000
#: a memory limit that the old importer exceeded, far above what a bounded one needs
LIMIT_AS = 4 * 2**30


def _same_digits(n: int) -> root_files.Digits:
    column = np.full(n, 1, dtype=np.uint16)
    return (np.full(n, 8480, dtype=np.uint16), column, column * 2, column * 3)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``blocks``: 17 entries of 2,000,000 identical digits (34 million digits: a block of 256
    entries would exceed the memory budget of 2**25 digits), zstd-5; ``entry``: an entry of
    one digit more than the PXD has pixels. Written by real ROOT (~4 s together)."""
    base = tmp_path_factory.mktemp("bombs")
    entry = _same_digits(BOMB_DIGITS)
    return {
        "blocks": write_overlay_file(
            base / "blocks.root", [entry] * 17, compression=COMPRESSIONS["zstd-5"]
        ),
        "entry": write_overlay_file(
            base / "entry.root",
            [([8480], [1], [2], [3]), _same_digits(40 * 250 * 768 + 1)],
            compression=COMPRESSIONS["zstd-5"],
        ),
    }


#: case: (file, extra arguments, the error, peak MiB allowed)
BOMBS = {
    # the counts are read first, while the files are checked: refused before any digit
    "block-over-budget": (
        "blocks",
        [],
        "'{file}' entries 0..16: 34,000,000 digits in one block of 256 events, above the "
        "33,554,432 an import holds per block (its memory budget): import into a new pool "
        "with smaller blocks, e.g. --block-events 16",
        150,
    ),
    "entry-over-the-pixels": (
        "entry",
        [],
        "'{file}' entry 1 records 7,680,001 digits, and an event holds at most 7,680,000 "
        "(one per pixel of the 40 PXD sensors): the file is damaged or not PXD background",
        150,
    ),
    # blocks of 16 entries (32 million digits) are within the budget: read in pieces of whole
    # entries of up to 4 million digits, the first piece's first entry is refused
    "read-in-pieces": (
        "blocks",
        ["--block-events", "16"],
        "'{file}' entry 0: digit 1 is a second digit on pixel (sensor 1.1.1, u 1, v 2)",
        450,
    ),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_a_compression_bomb_is_refused_in_bounded_memory(
    tmp_path: Path, bombs: dict[str, Path], case: str
) -> None:
    """``bgcache import`` of a file whose digits would take gigabytes, as a real process under
    an address-space limit: one line, exit 1, peak memory measured (the refusals from the
    counts 80 MiB, the piecewise read 310 MiB; before, 3.5 GB and a MemoryError), no pool."""
    name, extra, message, peak_mib = BOMBS[case]
    pool = tmp_path / "p"
    argv = [sys.executable, "-m", "bgcache", "import", str(pool), str(bombs[name]), *extra]
    code, out, peak, seconds = fault_hostile.run_measured(argv, limit_as=LIMIT_AS, seconds=60)
    print(f"{case}: peak {peak:.0f} MiB, {seconds:.1f} s")
    lines = out.splitlines()  # stdout and stderr: the error line is the only line
    assert code == 1 and len(lines) == 1 and lines[0].startswith("bgcache: error: "), out
    assert message.format(file=bombs[name]) in lines[0]
    assert peak < peak_mib, f"{case}: peak {peak:.0f} MiB"
    assert not pool.exists()


# -- concurrency, paths ------------------------------------------------------------------------


def test_two_imports_into_one_pool_at_once_equal_one(
    tmp_path: Path, files: list[Path], events: list[SparseEvent], pool_files: Any
) -> None:
    """Two ``bgcache import`` processes of the same files into one new pool at once: both
    succeed (one creates the pool, the other opens it; a block both write gets the same
    bytes), and the pool is one import's."""
    ref = tmp_path / "ref"
    import_pool(ref, files, block_events=2)
    pool = tmp_path / "p"
    argv = [sys.executable, "-m", "bgcache", "import", str(pool), *map(str, files)]
    procs = [
        subprocess.Popen([*argv, "--block-events", "2", "-q"], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert pool_files(pool) == pool_files(ref)
    report = verify_pool(pool)
    assert report.ok and not report.warnings, report.warnings
    assert_pool_holds(pool, events)


def test_unicode_and_space_paths(tmp_path: Path, events: list[SparseEvent], cli: Invoke) -> None:
    """Files and pools under names with spaces and non-ASCII letters: import, inspect, verify,
    gc, a build, the overlay and the error messages handle them as any other path."""
    base = tmp_path / "Läufe mit Leerzeichen"
    base.mkdir()
    path = base / "β run #1.root"  # ROOT reads '#' in a name as an anchor: written, then named
    write_overlay_file(tmp_path / "run.root", [event_digits(e) for e in events[:3]]).rename(path)
    pool = tmp_path / "pools" / "Pool ü ✓"
    r = cli("import", str(pool), str(base), "--block-events", "2")
    assert r.exit_code == 0, r.stderr
    assert f"pool {pool}: imported events" in r.stdout
    assert_pool_holds(pool, events[:3])
    shown = cli("inspect", str(pool))
    assert shown.exit_code == 0 and "β run #1.root: 3 entries" in shown.stdout, shown.stdout
    checked = cli("verify", str(pool), "--strict")
    assert checked.exit_code == 0 and f"OK: pool {pool}" in checked.stdout
    assert cli("gc", str(pool), "--grace", "0s").exit_code == 0
    with PoolOverlay(pool, on_exhausted="reuse") as overlay:
        assert [overlay.next_event() for _ in range(3)].count(events[1]) == 1
    built = tmp_path / "Ein Pool" / "ν"
    r = cli("build", str(built), "-m", "synthetic", "-n", "2", "-q")
    assert r.exit_code == 0 and verify_pool(built).ok, r.stderr
    r = cli("import", str(pool), str(path), str(base / "ä fehlt.root"))
    assert r.exit_code == 2 and f"'{base / 'ä fehlt.root'}' does not exist" in r.stderr


# -- kill -9 and resume -----------------------------------------------------------------------


def test_kill_9_during_an_import_and_resume_byte_identical(tmp_path: Path, pool_files: Any) -> None:
    events = synthetic_events(24, seed=9)
    path = write_overlay_file(tmp_path / "bg.root", [event_digits(e) for e in events])
    ref = tmp_path / "ref"
    import_pool(ref, [path], block_events=2)
    argv = [
        sys.executable,
        "-m",
        "bgcache",
        "import",
        str(tmp_path / "p"),
        str(path),
        "--block-events",
        "2",
        "-q",
    ]
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        markers: list[Path] = []
        while proc.poll() is None and time.monotonic() < deadline:
            markers = list((tmp_path / "p").glob("streams/*/*/zarr.json"))
            if len(markers) > 2 * attempt + 1:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        if proc.wait(timeout=60) == -signal.SIGKILL:
            kills += 1
            reader = open_pool(tmp_path / "p")  # what survived reads as complete blocks
            for info, held in reader.blocks():
                assert held == events[info.first_index : info.first_index + info.n_events]
    print(f"{kills} kills in 6 imports")
    assert kills >= 1, "every import finished before it was killed"
    subprocess.run(argv, check=True, timeout=120, env={**os.environ})
    assert pool_files(tmp_path / "p") == pool_files(ref)
    assert_pool_holds(tmp_path / "p", events)
    assert verify_pool(tmp_path / "p").ok


def test_compare_a_generated_pool_with_its_imported_twin(
    tmp_path: Path, files: list[Path], cli: Invoke
) -> None:
    """The files hold synthetic events (seed 5, every third emptied); a synthetic pool of
    the same keys differs from the import only in those empty events."""
    import_pool(tmp_path / "imported", files)
    build_pool(tmp_path / "generated", model="synthetic", seed=5, events=7)
    r = cli("compare", str(tmp_path / "generated"), str(tmp_path / "imported"), "--json", "-q")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["reference"]["imported"] and report["reference"]["sampled"] == 7
    # 2 of 7 imported events are empty: the generated pool has 7/5 of the hits per event
    assert report["occupancy"]["overall"]["ratio"] == pytest.approx(7 / 5, rel=0.02)
    assert report["distributions"]["charge"]["ks"] < 0.01  # the same pixels otherwise
    assert report["distributions"]["hits_per_event"]["ks"] == pytest.approx(2 / 7)


def test_an_entry_count_beyond_any_plan_is_refused(
    tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's entry count is the file's word: one that would plan more blocks than a build
    plans is refused before the pool exists (a hostile or damaged header)."""
    import bgcache.importer as importer

    real = importer.scan_source

    def huge(path: Path, *args: Any) -> Any:
        found = real(path, *args)
        return importer.SourceFile(found.path, found.sha256, 2**40, found.nbytes)

    monkeypatch.setattr(importer, "scan_source", huge)
    with pytest.raises(ImportSourceError, match="record 1,099,511,627,776 entries"):
        import_pool(tmp_path / "p", [files[0]])
    assert not (tmp_path / "p").exists()
