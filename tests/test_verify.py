"""``verify_pool`` finds every kind of damage, names the block and key range, and readers
raise instead of returning a damaged event."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from bgcache.build import build_pool
from bgcache.errors import CorruptBlockError
from bgcache.store import open_pool
from bgcache.store.format import stream_name
from bgcache.store.verify import verify_pool

BLOCK = f"streams/{stream_name(0)}/1"  # keys (0, 8) .. (0, 15)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    path = tmp_path / "p"
    build_pool(path, model="synthetic", events=24, block_events=8)
    return path


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def edit_marker(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["attributes"]["bgcache"]["n_events"] = 7
    path.write_text(json.dumps(doc))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped-index-byte": (
        lambda p: flip_byte(p / BLOCK / "index/c/0", 5000),
        "crc32c checksum mismatch",
    ),
    "flipped-charge-byte": (lambda p: flip_byte(p / BLOCK / "charge/c/0", 100), "crc32c"),
    "flipped-counts-byte": (lambda p: flip_byte(p / BLOCK / "counts/c/0", 20), "crc32c"),
    "flipped-shard-index": (lambda p: flip_byte(p / BLOCK / "index/c/0", -10), "shard index"),
    "truncated-index": (lambda p: truncate(p / BLOCK / "index/c/0", 3000), "truncated"),
    "deleted-charge": (lambda p: (p / BLOCK / "charge/c/0").unlink(), "missing"),
    "deleted-array-metadata": (
        lambda p: (p / BLOCK / "index/zarr.json").unlink(),
        "array metadata",
    ),
    "damaged-marker": (lambda p: (p / BLOCK / "zarr.json").write_text("{"), "marker is damaged"),
    "inconsistent-marker": (lambda p: edit_marker(p / BLOCK / "zarr.json"), "n_events=7"),
    "deleted-stream-metadata": (
        lambda p: (p / f"streams/{stream_name(0)}/zarr.json").unlink(),
        "stream group",
    ),
    # documents larger than MAX_DOCUMENT_BYTES: refused unread (sparse files: nothing written)
    "oversized-marker": (
        lambda p: os.truncate(p / BLOCK / "zarr.json", 2**25),
        "marker is damaged",
    ),
    "oversized-streams-metadata": (
        lambda p: os.truncate(p / "streams/zarr.json", 2**25),
        "streams group metadata is damaged",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_verify_names_damaged_block_and_keys(pool: Path, damage: str) -> None:
    assert verify_pool(pool).ok
    apply, needle = DAMAGE[damage]
    apply(pool)
    report = verify_pool(pool)
    assert not report.ok
    text = "\n".join(str(p) for p in report.problems)
    assert needle in text, text
    if "stream" not in damage:
        assert all(p.path == BLOCK for p in report.problems), text
        assert "[seed 0, indices 8..15]" in text


@pytest.mark.parametrize(
    "damage", ["flipped-index-byte", "flipped-charge-byte", "truncated-index", "deleted-charge"]
)
def test_reader_raises_instead_of_returning_damage(pool: Path, damage: str) -> None:
    DAMAGE[damage][0](pool)
    opened = open_pool(pool)
    with pytest.raises(CorruptBlockError, match=r"indices 8\.\.15"):
        list(opened)
    with pytest.raises(CorruptBlockError):
        [opened.event_by_key(0, i) for i in range(8, 16)]
    # other blocks still read
    assert opened.event_by_key(0, 0).n_hits > 0
    assert opened.event_by_key(0, 23).n_hits > 0


def test_leftovers_are_warnings(pool: Path) -> None:
    (pool / f"streams/{stream_name(0)}/5").mkdir()
    (pool / f"streams/{stream_name(0)}/5/counts").mkdir()
    (pool / f"streams/{stream_name(0)}/5/counts/zarr.json.0a1b.partial").write_text("x")
    report = verify_pool(pool)
    assert report.ok
    kinds = sorted(w.kind for w in report.warnings)
    assert kinds == ["incomplete block", "partial file"]
    assert len(open_pool(pool)) == 24


def test_stale_summary_is_a_warning(pool: Path) -> None:
    meta = pool / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["bgcache"]["streams"] = []
    meta.write_text(json.dumps(doc))
    report = verify_pool(pool)
    assert report.ok and [w.kind for w in report.warnings] == ["summary"]
    build_pool(pool, model="synthetic", events=24)  # any build refreshes it
    assert not verify_pool(pool).warnings


def test_directories_nested_deeper_than_any_pool_are_refused(
    pool: Path, cli: Callable[..., Result]
) -> None:
    """A hostile pool nests directories 40 deep inside a block: verify says where in one
    line (before, a walk descended any depth, and thousands of levels ended in a
    RecursionError traceback)."""
    deep = pool / BLOCK / "/".join(["d"] * 40)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    result = cli("verify", str(pool))
    assert result.exit_code == 1
    err = result.stderr
    assert err.count("\n") == 1 and "nests directories deeper than 16" in err, err
