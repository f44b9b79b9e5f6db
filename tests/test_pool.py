"""The pool store: round trips, zarr compatibility, layout, appends, resume, multi-writer."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

import bgcache
from bgcache.build import build_pool, plan_blocks
from bgcache.errors import (
    EventNotFoundError,
    NotAPoolError,
    PoolExistsError,
    PoolFormatError,
    PoolMismatchError,
    PoolNotFoundError,
    PoolWriteError,
    PositionError,
    UsageError,
)
from bgcache.store import open_pool
from bgcache.store.columns import PackedBlock, unpack_block
from bgcache.store.format import stream_name
from bgcache.store.verify import verify_pool

SYNTH = bgcache.load_model("synthetic")


def data_files(root: Path) -> dict[str, bytes]:
    """Every column object of a pool (chunks, shards and their array metadata), by path.

    Block markers and the root record hold times and writer ids, so they are left out;
    everything else must be byte-identical between two builds of the same keys.
    """
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        if path.is_file() and len(parts) > 4 and not rel.endswith(".partial"):
            out[rel] = path.read_bytes()
    return out


def expected(seed: int, start: int, stop: int) -> list[bgcache.SparseEvent]:
    return SYNTH.events([(seed, i) for i in range(start, stop)])


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 events of seed 5 and 12 of seed -3, blocks of 16 (short blocks at the ends)."""
    path = tmp_path_factory.mktemp("pools") / "small"
    build_pool(path, model="synthetic", seed=5, events=40, block_events=16)
    build_pool(path, model="synthetic", seed=-3, events=12)
    return path


# -- reading ----------------------------------------------------------------------------


def test_round_trip_by_position_key_and_block(small_pool: Path) -> None:
    pool = open_pool(small_pool)
    events = expected(-3, 0, 12) + expected(5, 0, 40)  # ascending seed order
    assert len(pool) == 52
    assert pool.streams() == {-3: [(0, 12)], 5: [(0, 40)]}
    assert [pool.event(i) for i in range(52)] == events
    assert pool[-1] == events[-1]
    assert list(pool) == events
    assert [pool.event_by_key(5, i) for i in (0, 15, 16, 39)] == [
        events[12 + i] for i in (0, 15, 16, 39)
    ]
    assert pool.key(12) == (5, 0)
    assert pool.position(5, 17) == 29
    blocks = [(info.seed, info.first_index, info.n_events) for info, _ in pool.blocks()]
    assert blocks == [(-3, 0, 12), (5, 0, 16), (5, 16, 16), (5, 32, 8)]


def test_events_are_bit_identical_to_the_generator(small_pool: Path) -> None:
    pool = open_pool(small_pool)
    for got, want in zip(pool, expected(-3, 0, 12), strict=False):
        for col in ("sensor", "u", "v", "charge"):
            a, b = getattr(got, col), getattr(want, col)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_zarr_python_reads_every_column(small_pool: Path) -> None:
    """The pool is plain Zarr v3: zarr-python decodes the same columns."""
    group = zarr.open_group(small_pool, mode="r")
    assert group.attrs["bgcache"]["format"] == "bgcache-pool"
    block = group[f"streams/{stream_name(5)}/2~8"]
    assert block.attrs["bgcache"]["n_events"] == 8
    packed = PackedBlock(block["counts"][:], block["index"][:], block["charge"][:])
    assert unpack_block(packed) == expected(5, 32, 40)


def test_missing_key_and_position_errors_say_what_is_there(small_pool: Path) -> None:
    pool = open_pool(small_pool)
    with pytest.raises(EventNotFoundError, match=r"stream 5 holds 0\.\.39"):
        pool.event_by_key(5, 40)
    with pytest.raises(EventNotFoundError, match="no stream with seed 9"):
        pool.event_by_key(9, 0)
    with pytest.raises(PositionError, match="holds 52 events"):
        pool.event(52)
    with pytest.raises(IndexError):
        pool[100]


def test_reading_needs_no_torch(small_pool: Path) -> None:
    code = (
        "import sys, bgcache\n"
        f"p = bgcache.open_pool({str(small_pool)!r})\n"
        "assert len(list(p)) == 52 and p.event_by_key(5, 3).n_hits > 0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_describe(small_pool: Path) -> None:
    info = open_pool(small_pool).describe()
    assert info["events"] == 52 and info["blocks"] == 4
    assert info["physics_model"] is False and "NOT a physics model" in info["note"]
    assert info["streams"][0] == {"seed": -3, "ranges": [[0, 12]], "events": 12, "blocks": 1}
    assert 50_000 < info["bytes_per_event"] < 150_000
    assert info["compression_ratio"] > 50
    assert info["hits"] > 52 * 50_000


# -- opening errors ---------------------------------------------------------------------


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(PoolNotFoundError, match="does not exist"):
        open_pool(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotAPoolError, match="is a file"):
        open_pool(tmp_path / "file")
    with pytest.raises(NotAPoolError, match=r"no zarr\.json"):
        open_pool(tmp_path)
    zarr.open_group(tmp_path / "other", mode="w")
    with pytest.raises(NotAPoolError, match="not a bgcache pool"):
        open_pool(tmp_path / "other")


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    build_pool(tmp_path / "p", model="synthetic", events=2)
    meta = tmp_path / "p" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["bgcache"]["format_version"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(PoolFormatError, match=r"format version 99.*upgrade bgcache"):
        open_pool(tmp_path / "p")


def test_damaged_root_metadata(tmp_path: Path) -> None:
    build_pool(tmp_path / "p", model="synthetic", events=2)
    (tmp_path / "p" / "zarr.json").write_text("{not json")
    with pytest.raises(PoolFormatError, match="not valid JSON"):
        open_pool(tmp_path / "p")


# -- building ---------------------------------------------------------------------------


def test_plan_blocks_aligns_and_shards() -> None:
    tasks = plan_blocks(1, 10, 30, 16)
    assert [(t.block, t.n_events, t.first_index) for t in tasks] == [
        (0, 16, 0),
        (1, 16, 16),
        (2, 8, 32),
    ]
    parts = [plan_blocks(1, 0, 100, 8, shard=(k, 3)) for k in range(3)]
    blocks = [t.block for part in parts for t in part]
    assert blocks == list(range(13))


def test_append_streams_and_extend_a_stream(tmp_path: Path) -> None:
    path = tmp_path / "p"
    r1 = build_pool(path, model="synthetic", seed=1, events=20, block_events=8)
    assert (r1.blocks_written, r1.events_written) == (3, 20)
    r2 = build_pool(path, model="synthetic", seed=1, events=30)  # extends 20 -> 30
    assert r2.blocks_skipped == 2 and r2.events_written == 14  # block 2 rebuilt in full
    r3 = build_pool(path, model="synthetic", seed=2, events=5, first_index=100)
    assert r3.events_written == 9  # widened down to the start of block 12
    assert r3.notes == ["the range starts inside block 12: building from index 96"]
    pool = open_pool(path)
    assert pool.streams() == {1: [(0, 30)], 2: [(96, 105)]}
    assert list(pool) == expected(1, 0, 30) + expected(2, 96, 105)
    assert [x.kind for x in pool.leftovers] == ["superseded block"]
    record = json.loads((path / "zarr.json").read_text())["attributes"]["bgcache"]
    assert record["streams"] == [
        {"seed": 1, "ranges": [[0, 30]], "events": 30},
        {"seed": 2, "ranges": [[96, 105]], "events": 9},
    ]
    report = verify_pool(path)
    assert report.ok and report.events == 39


def test_rebuild_skips_everything(tmp_path: Path) -> None:
    build_pool(tmp_path / "p", model="synthetic", events=10)
    before = data_files(tmp_path / "p")
    r = build_pool(tmp_path / "p", model="synthetic", events=10)
    assert (r.blocks_written, r.blocks_skipped) == (0, 1)
    assert data_files(tmp_path / "p") == before
    with pytest.raises(PoolExistsError, match="--no-resume"):
        build_pool(tmp_path / "p", model="synthetic", events=10, resume=False)


def test_mismatched_append_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p"
    build_pool(path, model="synthetic", events=4, block_events=4)
    before = sorted(p.as_posix() for p in path.rglob("*"))
    root_before = (path / "zarr.json").read_bytes()
    with pytest.raises(PoolMismatchError, match="block_events=4"):
        build_pool(path, model="synthetic", events=4, block_events=8)
    content = json.loads(root_before)["attributes"]["bgcache"]["content"]
    content["architecture"] = "synthetic-0"
    doc = json.loads(root_before)
    doc["attributes"]["bgcache"]["content"] = content
    (path / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(PoolMismatchError, match="architecture: pool has 'synthetic-0'"):
        build_pool(path, model="synthetic", events=8)
    assert sorted(p.as_posix() for p in path.rglob("*")) == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"events": 0}, "events must be >= 1"),
        ({"events": 3, "seed": 2**63}, "out of range"),
        ({"events": 3, "block_events": 0}, "block_events must be in"),
        ({"events": 3, "shard": "2/2"}, "out of range"),
        ({"events": 3, "shard": "x"}, "not of the form K/N"),
        ({"events": 3, "workers": 0}, "workers must be in"),
    ],
    ids=["zero-events", "seed-range", "block-zero", "shard-range", "shard-form", "workers"],
)
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_pool(tmp_path / "p", model="synthetic", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "p").exists()


def test_pool_path_is_a_file_or_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep me")
    with pytest.raises(NotAPoolError, match="is a file"):
        build_pool(tmp_path / "f", model="synthetic", events=2)
    assert (tmp_path / "f").read_text() == "keep me"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("keep me")
    with pytest.raises(NotAPoolError, match="non-empty directory"):
        build_pool(tmp_path / "d", model="synthetic", events=2)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["notes.txt"]


def test_interrupted_build_resumes_to_identical_bytes(tmp_path: Path) -> None:
    build_pool(tmp_path / "full", model="synthetic", seed=9, events=50, block_events=8)

    def interrupt(done: int, total: int) -> None:
        if done >= 21:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_pool(
            tmp_path / "cut",
            model="synthetic",
            seed=9,
            events=50,
            block_events=8,
            batch_events=3,
            progress=interrupt,
        )
    cut = open_pool(tmp_path / "cut")
    assert 0 < len(cut) < 50 and verify_pool(cut).ok
    assert list(cut) == expected(9, 0, len(cut))
    r = build_pool(tmp_path / "cut", model="synthetic", seed=9, events=50)
    assert r.blocks_skipped == len(cut) // 8
    assert data_files(tmp_path / "cut") == data_files(tmp_path / "full")


def test_disk_full_keeps_complete_blocks_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for a full disk: the storage's write raises ENOSPC from its 12th object on."""
    from bgcache.store import storage

    real = storage.LocalStorage._write_tmp
    calls = {"n": 0}

    def full_disk(self: storage.LocalStorage, target: Path, data: bytes) -> Path:
        calls["n"] += 1
        if calls["n"] >= 12:
            raise storage._write_error(
                OSError(errno.ENOSPC, "No space left on device"), self.url, target.name
            )
        return real(self, target, data)

    monkeypatch.setattr(storage.LocalStorage, "_write_tmp", full_disk)
    with pytest.raises(PoolWriteError, match=r"no space left.*resume"):
        build_pool(tmp_path / "p", model="synthetic", events=40, block_events=8)
    monkeypatch.undo()
    pool = open_pool(tmp_path / "p")
    assert len(pool) == 8  # root, streams, stream group, 5 objects of block 0 + its marker
    assert verify_pool(pool).ok
    build_pool(tmp_path / "p", model="synthetic", events=40)
    build_pool(tmp_path / "ref", model="synthetic", events=40, block_events=8)
    assert data_files(tmp_path / "p") == data_files(tmp_path / "ref")


def test_read_only_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for a read-only file system (root writes anywhere): mkdir raises EROFS."""
    build_pool(tmp_path / "p", model="synthetic", events=4)

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(PoolWriteError, match="read-only"):
        build_pool(tmp_path / "p", model="synthetic", events=8)
    assert len(open_pool(tmp_path / "p")) == 4  # reading works


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_really_read_only_directory(tmp_path: Path) -> None:
    build_pool(tmp_path / "p", model="synthetic", events=4)
    for p in [tmp_path / "p", *(tmp_path / "p").rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    try:
        with pytest.raises(PoolWriteError, match="read-only"):
            build_pool(tmp_path / "p", model="synthetic", events=8)
        assert verify_pool(tmp_path / "p").ok
    finally:
        for p in [tmp_path / "p", *(tmp_path / "p").rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)


def test_worker_processes_build_the_same_bytes(tmp_path: Path) -> None:
    build_pool(tmp_path / "one", model="synthetic", seed=4, events=40, block_events=8)
    r = build_pool(
        tmp_path / "two", model="synthetic", seed=4, events=40, block_events=8, workers=2
    )
    assert r.blocks_written == 5 and r.workers == 2
    assert data_files(tmp_path / "two") == data_files(tmp_path / "one")


def test_two_processes_build_disjoint_shards_of_one_new_pool(tmp_path: Path) -> None:
    """Two writers start at once on a pool that does not exist yet (they race to create it)."""
    pool = tmp_path / "shared"
    cmd = [
        sys.executable,
        "-m",
        "bgcache.cli",
        "build",
        str(pool),
        "-m",
        "synthetic",
        "-n",
        "96",
        "--seed",
        "6",
        "--block-events",
        "8",
        "--quiet",
        "--shard",
    ]
    procs = [
        subprocess.Popen([*cmd, f"{k}/2"], stderr=subprocess.PIPE, text=True) for k in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    build_pool(tmp_path / "ref", model="synthetic", seed=6, events=96, block_events=8)
    assert data_files(pool) == data_files(tmp_path / "ref")
    opened = open_pool(pool)
    assert opened.streams() == {6: [(0, 96)]}
    report = verify_pool(opened)
    assert report.ok and not report.warnings, report.warnings


def test_killed_build_leaves_nothing_readable_and_resumes(tmp_path: Path) -> None:
    """kill -9 of a real build process while it writes: readers see only complete blocks."""
    import signal
    import time

    pool = tmp_path / "p"
    cmd = [
        sys.executable,
        "-m",
        "bgcache.cli",
        "build",
        str(pool),
        "-m",
        "synthetic",
        "-n",
        "400",
        "--block-events",
        "16",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        blocks = list(pool.glob("streams/*/*/zarr.json"))
        if len(blocks) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    opened = open_pool(pool)
    assert 0 < len(opened) < 400
    assert list(opened) == expected(0, 0, len(opened))
    assert verify_pool(opened).ok
    build_pool(pool, model="synthetic", events=400)
    build_pool(tmp_path / "ref", model="synthetic", events=400, block_events=16)
    assert data_files(pool) == data_files(tmp_path / "ref")


def test_empty_events_round_trip(tmp_path: Path) -> None:
    """Blocks whose events have no hits (an empty detector) store and read back."""
    pool_path = tmp_path / "p"
    build_pool(pool_path, model="synthetic", events=1)
    from bgcache.hits import SparseEvent
    from bgcache.store.pool import open_storage
    from bgcache.store.records import read_root_record
    from bgcache.store.writer import PoolWriter

    storage = open_storage(pool_path)
    pool = PoolWriter(storage, read_root_record(storage))
    pool.ensure_stream(77)
    pool.write_block(77, 0, [SparseEvent.empty(), SparseEvent.empty()])
    pool.refresh()
    assert pool.event_by_key(77, 1) == SparseEvent.empty()
    assert [e.n_hits for _, evs in pool.blocks() for e in evs][-2:] == [0, 0]
    assert np.array_equal(pool.event(0).charge, expected(0, 0, 1)[0].charge)


@pytest.mark.slow
def test_gan_pool_round_trip_and_content_checks(
    tmp_path: Path, checkpoint_of: Callable[[str, int], Path]
) -> None:
    """A convnet pool holds exactly the generator's events; another checkpoint or precision
    is refused. Full-size events of an untrained demo checkpoint, ~3 s each."""
    a, b = checkpoint_of("convnet", 3), checkpoint_of("convnet", 1)
    path = tmp_path / "p"
    r = build_pool(path, model="convnet", checkpoint=a, events=3, block_events=2, nintra=2)
    assert (r.blocks_written, r.events_written) == (2, 3)
    pool = open_pool(path)
    # what auto ran here (bf16-mixed on bf16 hardware, else fp32), the same again from Python
    gen = bgcache.load_model("convnet", a, nintra=2, precision=pool.content["precision"])
    assert list(pool) == gen.events([(0, i) for i in range(3)])
    assert pool.untrained and not pool.physics_model
    assert pool.content["checkpoint_sha256"] == gen.checkpoint_sha256
    assert pool.record["hints"]["checkpoint_path"] == str(a.resolve())
    with pytest.raises(PoolMismatchError, match="checkpoint_sha256"):
        build_pool(path, model="convnet", checkpoint=b, events=4)
    with pytest.raises(PoolMismatchError, match="optimize: pool has True, this build False"):
        build_pool(path, model="convnet", checkpoint=a, events=4, optimize=False)
    with pytest.raises(PoolMismatchError, match="holds convnet events"):
        build_pool(path, model="synthetic", events=4)
    assert len(open_pool(path)) == 3 and verify_pool(path).ok


def test_location_is_checked_before_the_model_loads(tmp_path: Path) -> None:
    """Mistakes about the pool are reported before minutes of GAN loading, and write nothing."""
    build_pool(tmp_path / "p", model="synthetic", events=2)
    with pytest.raises(PoolMismatchError, match=r"holds synthetic events.*--model synthetic"):
        build_pool(tmp_path / "p", model="convnet", checkpoint=tmp_path / "missing.pt", events=2)
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotAPoolError, match="is a file, so no directory"):
        build_pool(tmp_path / "f" / "p", model="synthetic", events=2)
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize(
    ("deltas", "message"),
    [
        ([7_000_000, 1_000_000], "event 1 has pixels beyond the detector"),
        ([4_000_000_000, 294_967_297], "event 1 has pixels beyond the detector"),
        ([5, 0], "unsorted or repeated pixels"),
    ],
    ids=["beyond", "wraps-uint32", "repeated"],
)
def test_a_reader_refuses_events_off_the_detector(
    tmp_path: Path, deltas: list[int], message: str
) -> None:
    """Columns whose checksums hold but whose running sum leaves the detector, also where a
    uint32 sum would wrap back onto it (the last value alone would look sound), are refused
    by every read, and verify reports them."""
    from bgcache.errors import CorruptBlockError
    from bgcache.store.pool import open_storage
    from bgcache.store.records import read_root_record
    from bgcache.store.writer import PoolWriter

    build_pool(tmp_path / "p", model="synthetic", events=1)
    storage = open_storage(tmp_path / "p")
    writer = PoolWriter(storage, read_root_record(storage))
    writer.ensure_stream(8)
    block = PackedBlock(
        np.array([1, 2], np.uint32), np.array([3, *deltas], np.uint32), np.ones(3, np.uint8)
    )
    writer.write_packed(8, 0, block)
    pool = open_pool(tmp_path / "p")
    info = pool.block_list[-1]
    for read in (lambda: pool.read_block(info), lambda: pool.read_window(info, 1, 2)):
        with pytest.raises(CorruptBlockError, match=message):
            read()
    assert pool.read_events(info, 0, 1)[0].pixel_index.tolist() == [3]
    assert not verify_pool(pool).ok
