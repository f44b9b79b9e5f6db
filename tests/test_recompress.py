"""``bgcache recompress`` and :func:`bgcache.store.recompress.recompress_pool`: the same events
under another codec, resumable after kill -9, verify-clean, the source never written."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from bgcache.build import build_pool
from bgcache.errors import CorruptBlockError, PoolMismatchError, UsageError
from bgcache.store.columns import PackedBlock
from bgcache.store.pool import open_pool, open_storage
from bgcache.store.recompress import recompress_pool
from bgcache.store.records import read_root_record
from bgcache.store.verify import verify_pool
from bgcache.store.writer import PoolWriter

Invoke = Callable[..., Result]  # the `cli` fixture of conftest.py
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed 2: 40 events in blocks of 16 (the short block of a first build of 20 is
    superseded, a leftover); seed -5: 6 events; a stream group of seed 9 without blocks."""
    path = tmp_path_factory.mktemp("recompress") / "src"
    build_pool(path, model="synthetic", seed=2, events=20, block_events=16)
    build_pool(path, model="synthetic", seed=2, events=40)
    build_pool(path, model="synthetic", seed=-5, events=6)
    storage = open_storage(path)
    PoolWriter(storage, read_root_record(storage)).ensure_stream(9)
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``root``: sha256 of a file's bytes (or "dir") and its mtime."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
    }


def columns_of(path: Path) -> dict[tuple[int, int], PackedBlock]:
    pool = open_pool(path)
    return {(b.seed, b.block): pool.read_columns(b) for b in pool.block_list}


def test_the_copy_holds_the_same_events_keys_streams_and_markers(
    source: Path, tmp_path: Path
) -> None:
    before = snapshot(source)
    result = recompress_pool(source, tmp_path / "lz4", codec="lz4")
    assert snapshot(source) == before  # never written
    src, dst = open_pool(source), open_pool(tmp_path / "lz4")
    assert (result.codec, result.source_codec) == ("lz4:9", "zstd:1")
    assert (result.blocks_written, result.events_written, result.pool_events) == (4, 46, 46)
    assert result.bytes_written > 1.3 * result.source_bytes  # lz4 is bigger
    # keys, positions, streams: the same; the bytes of every decoded column too
    assert [dst.key(i) for i in range(len(dst))] == [src.key(i) for i in range(len(src))]
    assert dst.streams() == src.streams() and dst.stream_seeds == src.stream_seeds == [-5, 2, 9]
    a, b = columns_of(source), columns_of(tmp_path / "lz4")
    assert a.keys() == b.keys()
    for key in a:
        for col in ("counts", "index_delta", "charge"):
            x, y = getattr(a[key], col), getattr(b[key], col)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (key, col)
    # the record: the same content (event identity), the layout's codec changed
    assert dst.content == src.content
    assert dst.layout.block_events == src.layout.block_events
    assert dst.layout.compression.codec == "lz4:9" and dst.describe()["codec"] == "lz4:9"
    origin = dst.record["hints"]["recompressed_from"]
    assert origin["codec"] == "zstd:1" and origin["pool"] == str(source.absolute())
    for info in src.block_list:
        have, _ = src.block_marker(info)
        got, _ = dst.block_marker(info)
        for key in ("seed", "block", "first_index", "n_events", "n_hits", "generate_seconds"):
            assert got[key] == have[key], key
        assert got["recompressed_from"]["written"] == have["written"]
    report = verify_pool(dst)
    assert report.ok and not report.warnings, report.warnings  # the leftover was not copied
    assert src.leftovers and not dst.leftovers


def test_a_copy_back_under_the_first_codec_has_the_first_bytes(
    source: Path, tmp_path: Path, pool_files: Callable[[object], dict[str, bytes]]
) -> None:
    recompress_pool(source, tmp_path / "lz4hc", codec="lz4hc:3")
    back = recompress_pool(tmp_path / "lz4hc", tmp_path / "back", codec="zstd")
    assert back.codec == "zstd:1"
    files = pool_files(tmp_path / "back")
    src_files = {k: v for k, v in pool_files(source).items() if "/1~4/" not in k}
    assert files == src_files  # the superseded short block is the only difference


#: (where the recompress is killed; see tests/fault_build.py), leaves a .partial file.
KILLS = {
    "index-shard-tmp-written": ("write", "after_tmp", 2, r"index/c/0$", True),
    "marker-renamed": ("write", "after", 3, r"^streams/[0-9a-f]{16}/[0-9~]+/zarr\.json$", False),
}


def test_a_killed_recompress_resumes_to_the_same_result(
    source: Path, tmp_path: Path, cli: Invoke, pool_files: Callable[[object], dict[str, bytes]]
) -> None:
    """kill -9 of the real command line mid-block and after a marker: what is complete
    reads as the source's events, and the same command completes the copy to the bytes of
    an uninterrupted one."""
    before = snapshot(source)
    plan = []
    for name, (target, when, nth, match, _) in KILLS.items():
        argv = ["recompress", str(source), str(tmp_path / name), "--codec", "lz4", "-q"]
        plan.append({"argv": argv, "target": target, "when": when, "nth": nth, "match": match})
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    subprocess.run(
        [sys.executable, str(HERE / "fault_build.py"), tmp_path / "plan.json", tmp_path / "out"],
        check=True,
        timeout=120,
    )
    results = json.loads((tmp_path / "out").read_text())
    whole = recompress_pool(source, tmp_path / "whole", codec="lz4")
    src = open_pool(source)
    for (name, (*_, partial)), result in zip(KILLS.items(), results, strict=True):
        assert result["signal"] == signal.SIGKILL, (name, result)
        cut = open_pool(tmp_path / name)
        assert 0 < len(cut.block_list) < whole.blocks_total, name
        assert bool(list((tmp_path / name).rglob("*.partial"))) == partial, name
        for info in cut.block_list:  # complete blocks read as the source's
            assert cut.read_block(info) == src.read_block(info)
        out = cli("recompress", str(source), str(tmp_path / name), "--codec", "lz4", "--json")
        assert out.exit_code == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["blocks_skipped"] == len(cut.block_list)
        assert summary["pool_events"] == 46
        assert pool_files(tmp_path / name) == pool_files(tmp_path / "whole"), name
        assert verify_pool(tmp_path / name).ok
    assert snapshot(source) == before


def test_refusals_write_nothing_to_either_pool(source: Path, tmp_path: Path, cli: Invoke) -> None:
    before = snapshot(source)
    cases: list[tuple[list[str], int, str]] = [
        ([str(source), str(source)], 2, "is the source pool"),
        ([str(source), str(source / "copy")], 2, "lies inside the source"),
        (
            [str(source), str(tmp_path / "x"), "--codec", "gzip"],
            2,
            "is not one of zstd, lz4, lz4hc",
        ),
        ([str(source), str(tmp_path / "x"), "--codec", "lz4:10"], 2, "an integer in 1..9"),
        ([str(tmp_path / "nowhere"), str(tmp_path / "x")], 1, "does not exist"),
    ]
    for args, code, needle in cases:
        argv = ["recompress", *args] + ([] if "--codec" in args else ["--codec", "lz4"])
        result = cli(*argv)
        assert result.exit_code == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bgcache: error: ") and needle in lines[0]
    assert not (tmp_path / "x").exists()
    # a target of other events, or of these events under another codec
    build_pool(tmp_path / "other", model="synthetic", seed=7, events=3, block_events=16)
    recompress_pool(source, tmp_path / "zstd-copy", codec="zstd:3")
    targets = {"other": snapshot(tmp_path / "other"), "zstd-copy": snapshot(tmp_path / "zstd-copy")}
    with pytest.raises(
        PoolMismatchError, match=r"holds block streams/0000000000000007/0~3 .* which"
    ):
        recompress_pool(source, tmp_path / "other", codec="zstd")
    record = json.loads((tmp_path / "other" / "zarr.json").read_text())
    record["attributes"]["bgcache"]["content"]["architecture"] = "synthetic-0"
    (tmp_path / "other" / "zarr.json").write_text(json.dumps(record))
    targets["other"] = snapshot(tmp_path / "other")
    with pytest.raises(PoolMismatchError, match="holds other events than"):
        recompress_pool(source, tmp_path / "other", codec="zstd")
    with pytest.raises(PoolMismatchError, match=r"under zstd:3 .*give --codec zstd:3 to complete"):
        recompress_pool(source, tmp_path / "zstd-copy", codec="lz4")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep")
    result = cli("recompress", str(source), str(tmp_path / "notes"), "--codec", "lz4")
    assert result.exit_code == 1 and "non-empty directory that is not a pool" in result.stderr
    assert targets == {k: snapshot(tmp_path / k) for k in targets}
    assert snapshot(source) == before
    with pytest.raises(UsageError, match="is the source pool"):
        recompress_pool(source, Path(str(source) + "/"), codec="lz4")


def test_a_damaged_source_block_stops_it_and_keeps_what_was_copied(
    source: Path, tmp_path: Path
) -> None:
    """A flipped byte in a source shard fails its checksum: the copy stops naming the
    block; the blocks before it are complete in the target, the source is left as it was."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(source, damaged)
    pool = open_pool(damaged)
    last = pool.block_list[-1]
    shard = damaged / last.path / "index" / "c" / "0"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    before = snapshot(damaged)
    with pytest.raises(CorruptBlockError, match=rf"block {last.path}.*crc32c"):
        recompress_pool(damaged, tmp_path / "copy", codec="lz4")
    assert snapshot(damaged) == before
    copy = open_pool(tmp_path / "copy")
    assert len(copy.block_list) == len(pool.block_list) - 1 and verify_pool(copy).ok


def test_cli_summary_and_progress(source: Path, tmp_path: Path, cli: Invoke) -> None:
    result = cli("recompress", str(source), str(tmp_path / "c"), "--codec", "lz4")
    assert result.exit_code == 0, result.stderr
    assert f"the events of {source}, zstd:1 -> lz4:9" in result.stdout
    assert "written    46 events in 4 blocks" in result.stdout
    assert "x the source's blocks" in result.stdout
    again = cli("recompress", str(source), str(tmp_path / "c"), "--codec", "lz4:9")
    assert "skipped    46 events in 4 blocks that were already complete" in again.stdout
    inspect = cli("inspect", str(tmp_path / "c"))
    assert "codec      lz4:9 (blosc lz4 level 9, shuffle)" in inspect.stdout
