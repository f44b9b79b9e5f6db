"""Hostile and damaged pools (part of the fault suite): a table of pools, each made by the
test from a real pool, that `bgcache inspect`, `bgcache verify` and the Python API (open,
read every block, describe, an overlay pass; ``tests/fault_hostile.py``) must refuse or
report in one clear line, within seconds, with memory bounded by the pool's layout, and
never by reading, waiting on or writing anything outside the pool.

Each command runs in a process of its own; its peak memory (``wait4``'s ``ru_maxrss``, taken
by a small parent process: one forked from pytest would inherit pytest's) and
wall time are asserted per case: memory tightly (a reader of this 24-event pool stays well
under 200 MiB (measured: 50-70); the decompression bomb alone would take 1 GiB), time
generously. A hard address-space limit keeps a regression from exhausting the machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bgcache
from bgcache.build import build_pool
from bgcache.store.format import stream_name
from bgcache.store.shards import crc32c

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import fault_hostile  # noqa: E402 (a helper beside the tests)

SID = stream_name(0)
BLOCK = f"streams/{SID}/1"
PEAK_MIB = 200  # a reader of this small pool peaks at 50-70 MiB
SECONDS = 60
LIMIT_AS = 6 * 2**30  # a regression fails here instead of taking the machine's memory


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc["attributes"]["bgcache"])
    path.write_text(json.dumps(doc))


def _root(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    return lambda pool, _: _edit_json(pool / "zarr.json", edit)


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        for key in path[:-1]:
            record = record[key]
        record[path[-1]] = value

    return edit


def _raw_replace(rel: str, old: str, new: str) -> Callable[[Path, Path], None]:
    def damage(pool: Path, _: Path) -> None:
        _edit_json(pool / rel, lambda record: None)  # one line: the text to replace is known
        text = (pool / rel).read_text()
        assert old in text, (rel, old)
        (pool / rel).write_text(text.replace(old, new, 1))

    return damage


def _link_to(rel: str, target: str) -> Callable[[Path, Path], None]:
    def damage(pool: Path, _: Path) -> None:
        (pool / rel).unlink()
        (pool / rel).symlink_to(target)

    return damage


def _fifo(rel: str) -> Callable[[Path, Path], None]:
    def damage(pool: Path, _: Path) -> None:
        (pool / rel).unlink()
        os.mkfifo(pool / rel)

    return damage


def _bomb_chunk() -> bytes:
    """1 GiB of zeros compressed to ~58 kB, with a valid crc32c: a decompression bomb."""
    from numcodecs import Blosc

    frame = bytes(Blosc("zstd", 9, Blosc.SHUFFLE).encode(np.zeros(2**28, "<u4")))
    return frame + np.uint32(crc32c(frame)).tobytes()


def _counts_bomb(n_hits_zero: bool) -> Callable[[Path, Path], None]:
    """A block's counts chunk replaced by the bomb (optionally with the marker's n_hits 0,
    which matches what it inflates to)."""

    def damage(pool: Path, _: Path) -> None:
        (pool / BLOCK / "counts/c/0").write_bytes(_bomb_chunk())
        if n_hits_zero:
            _edit_json(pool / BLOCK / "zarr.json", _set("n_hits", value=0))

    return damage


def _index_bomb(pool: Path, _: Path) -> None:
    """The first inner chunk of a block's index shard replaced by the bomb (small enough
    for the shard's size bound: the frame's declared size must refuse it)."""
    shard = (pool / BLOCK / "index/c/0").read_bytes()
    n_chunks = (len(shard) - 4) // 16  # at most: the index is at the end
    index = None
    for n in range(1, n_chunks + 1):  # the index whose checksum holds
        raw = shard[-(n * 16 + 4) : -4]
        if crc32c(raw) == int.from_bytes(shard[-4:], "little"):
            index = np.frombuffer(raw, "<u8").reshape(n, 2)
            break
    assert index is not None
    chunks = [_bomb_chunk()] + [shard[o : o + n] for o, n in index[1:]]
    offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    new_index = np.stack([offsets, [len(c) for c in chunks]], axis=1).astype("<u8").tobytes()
    body = b"".join(chunks) + new_index + np.uint32(crc32c(new_index)).tobytes()
    (pool / BLOCK / "index/c/0").write_bytes(body)


def _nested(pool: Path, _: Path) -> None:
    (pool / "zarr.json").write_text("[" * 200_000 + "]" * 200_000)


def _stream_outside(pool: Path, outside: Path) -> None:
    shutil.move(pool / "streams" / SID, outside / SID)
    (pool / "streams" / SID).symlink_to(outside / SID)


def _unreadable(pool: Path, _: Path) -> None:
    (pool / BLOCK / "index/c/0").chmod(0)


# id: (damage, what verify and the API must say, whether inspect may describe the pool
# (exit 0 or 1): damage inside one block, or a summary that inspect does not check)
CASES: dict[str, tuple[Callable[[Path, Path], None], str, bool]] = {
    "root-json-to-dev-zero": (_link_to("zarr.json", "/dev/zero"), "symbolic link", False),
    "marker-to-dev-zero": (_link_to(f"{BLOCK}/zarr.json", "/dev/zero"), "symbolic link", True),
    "chunk-to-dev-zero": (_link_to(f"{BLOCK}/index/c/0", "/dev/zero"), "symbolic link", True),
    "root-json-fifo": (_fifo("zarr.json"), "named pipe", False),
    "marker-fifo": (_fifo(f"{BLOCK}/zarr.json"), "named pipe", True),
    "chunk-fifo": (_fifo(f"{BLOCK}/counts/c/0"), "named pipe", True),
    "counts-bomb": (_counts_bomb(False), "its kind can", True),
    "counts-bomb-n-hits-0": (_counts_bomb(True), "its kind can", True),
    "index-chunk-bomb": (_index_bomb, "declares 1,073,741,824 bytes", True),
    "summary-range-2**62": (
        _root(lambda r: r["streams"][0].update(ranges=[[0, 2**62]])),
        "streams summary",
        True,  # inspect does not compare the summary with the blocks
    ),
    "summary-range-inf": (
        _raw_replace("zarr.json", '"ranges": [[0, 24]]', '"ranges": [[0, 1e400]]'),
        "out of range",
        False,
    ),
    "summary-not-a-list": (_root(_set("streams", value={"a": 1})), "'streams'", False),
    "block-events-0": (_root(_set("layout", "block_events", value=0)), "block_events", False),
    "block-events-negative": (
        _root(_set("layout", "block_events", value=-8)),
        "block_events",
        False,
    ),
    "block-events-bool": (_root(_set("layout", "block_events", value=True)), "block_events", False),
    "chunk-hits-0": (_root(_set("layout", "chunk_hits", value=0)), "chunk_hits", False),
    "layout-inf": (
        _raw_replace("zarr.json", '"chunk_hits": 65536', '"chunk_hits": 1e400'),
        "out of range",
        False,
    ),
    "clevel-string": (_root(_set("layout", "compression", "clevel", value="9")), "level", False),
    "marker-n-hits-inf": (
        _raw_replace(f"{BLOCK}/zarr.json", '"n_hits": ', '"n_hits": 1e400, "x": '),
        "damaged",
        True,
    ),
    "marker-n-hits-negative": (
        lambda pool, _: _edit_json(pool / BLOCK / "zarr.json", _set("n_hits", value=-5)),
        "damaged",
        True,
    ),
    "marker-n-hits-huge": (
        lambda pool, _: _edit_json(pool / BLOCK / "zarr.json", _set("n_hits", value=2**40)),
        "damaged",
        True,
    ),
    "hints-a-string": (_root(_set("hints", value="x")), "'hints'", False),
    "software-a-number": (_root(_set("software", value=5)), "'software'", False),
    "zarr-json-nested-200000": (_nested, "nested too deeply", False),
    "format-version-negative": (_root(_set("format_version", value=-7)), "format version", False),
    "format-version-true": (_root(_set("format_version", value=True)), "format version", False),
    "stream-dir-links-outside": (_stream_outside, "symbolic link", False),
    "chunk-unreadable": (_unreadable, "permission denied", True),
}

NO_DAC = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def run_measured(argv: list[str]) -> tuple[int, str, float, float]:
    """Exit code, output, peak MiB and seconds of one command (``fault_hostile.py``)."""
    return fault_hostile.run_measured(argv, limit_as=LIMIT_AS, seconds=SECONDS)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pool = tmp_path_factory.mktemp("hostile") / "pristine"
    build_pool(pool, model="synthetic", seed=0, events=24, block_events=8)
    return pool


COMMANDS = {
    "inspect": [sys.executable, "-m", "bgcache", "inspect"],
    "verify": [sys.executable, "-m", "bgcache", "verify"],
    "api": [sys.executable, str(HERE / "fault_hostile.py")],
}


@pytest.fixture(scope="module")
def hostile(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The pool of a case, made once from a copy of the pristine pool."""
    made: dict[str, Path] = {}

    def make(case: str) -> Path:
        if case not in made:
            base = tmp_path_factory.mktemp(case)
            pool, outside = base / "pool", base / "outside"
            shutil.copytree(pristine, pool)
            outside.mkdir()
            CASES[case][0](pool, outside)
            made[case] = pool
        return made[case]

    return make


def _can_drop_dac() -> bool:
    if os.geteuid() != 0:
        return True
    return shutil.which("setpriv") is not None and (
        subprocess.run([*NO_DAC, "true"], capture_output=True).returncode == 0
    )


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_pool(case: str, command: str, hostile: Callable[[str], Path]) -> None:
    _, says, describable = CASES[case]
    prefix: list[str] = []
    if case == "chunk-unreadable":
        if not _can_drop_dac():
            pytest.skip("root without setpriv reads a mode-000 file")
        prefix = NO_DAC if os.geteuid() == 0 else []
    pool = hostile(case)
    before = {p: p.stat().st_mtime_ns for p in pool.parent.rglob("*") if not p.is_symlink()}
    code, out, peak, seconds = run_measured([*prefix, *COMMANDS[command], str(pool)])
    assert "Traceback" not in out, out[-2000:]
    assert peak < PEAK_MIB, f"peak {peak:.0f} MiB"
    if command == "inspect" and describable:
        assert code in (0, 1), out
    else:
        assert code == 1, out
        assert says in out, out
    if command == "api":  # the overlay logs the blocks it skipped; then one line, the error
        last = out.strip().splitlines()[-1]
        assert last.split(":")[0].endswith("Error") and says in last, out
    after = {p: p.stat().st_mtime_ns for p in pool.parent.rglob("*") if not p.is_symlink()}
    assert after == before  # nothing written, inside the pool or outside it
    print(f"{case} {command}: exit {code}, {peak:.0f} MiB, {seconds:.1f} s")


def test_zero_hit_pool_is_inspected(tmp_path: Path) -> None:
    """A valid pool whose events have no hits (inspect's bits per hit divided by zero)."""
    from bgcache.build import content_record
    from bgcache.store.format import Layout
    from bgcache.store.writer import create_or_open_pool

    content, _ = content_record(dict(bgcache.load_model("synthetic").metadata()))
    writer = create_or_open_pool(tmp_path / "zero", content, Layout(8))
    writer.ensure_stream(0)
    empty = bgcache.SparseEvent([], [], [], [])
    writer.write_block(0, 0, [empty] * 8)
    writer.refresh_summary()
    code, out, _, _ = run_measured([*COMMANDS["inspect"], str(tmp_path / "zero")])
    assert code == 0 and "Traceback" not in out, out
    assert "8 complete events" in out or "8 events" in out, out
    code, out, _, _ = run_measured([*COMMANDS["verify"], str(tmp_path / "zero")])
    assert code == 0, out


def test_build_does_not_write_through_a_link_out_of_the_pool(
    hostile: Callable[[str], Path],
) -> None:
    pool = hostile("stream-dir-links-outside")
    outside = pool.parent / "outside" / SID
    before = sorted(p.relative_to(outside) for p in outside.rglob("*"))
    argv = [sys.executable, "-m", "bgcache", "build", str(pool), "-m", "synthetic", "-n", "40"]
    code, out, _, _ = run_measured([*argv, "-q"])
    assert code == 1 and "symbolic link" in out and "Traceback" not in out, out
    assert sorted(p.relative_to(outside) for p in outside.rglob("*")) == before
