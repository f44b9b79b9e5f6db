"""``bgcache gc``: superseded blocks and stale partial files go, after the grace period,
safely beside a reader; everything else stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bgcache
from bgcache.build import build_pool
from bgcache.errors import CorruptBlockError
from bgcache.overlay import PoolOverlay
from bgcache.store import open_pool
from bgcache.store.format import stream_name
from bgcache.store.gc import collect_garbage
from bgcache.store.verify import verify_pool

SYNTH = bgcache.load_model("synthetic")
SHORT = f"streams/{stream_name(0)}/2~4"
DAY = 86400.0


def _extended(tmp_path: Path) -> Path:
    """A pool of 20 events in blocks of 8 extended to 24: block 2~4 is superseded by 2."""
    pool = tmp_path / "pool"
    build_pool(pool, model="synthetic", events=20, block_events=8)
    build_pool(pool, model="synthetic", events=24)
    assert (pool / SHORT / "zarr.json").exists()
    return pool


def _files(pool: Path) -> set[str]:
    return {p.relative_to(pool).as_posix() for p in pool.rglob("*") if p.is_file()}


def test_superseded_block_and_old_partial_files_go_after_the_grace_period(
    tmp_path: Path,
) -> None:
    pool = _extended(tmp_path)
    old_partial = pool / f"streams/{stream_name(0)}/0/index/c/0.1a2b.partial"
    old_partial.write_bytes(b"x" * 100)
    os.utime(old_partial, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    young_partial = pool / "zarr.json.3c4d.partial"
    young_partial.write_bytes(b"y")
    before = _files(pool)

    young = collect_garbage(pool)  # the longer block and one partial file are fresh
    assert [r["path"] for r in young.removed] == [str(old_partial.relative_to(pool))]
    assert {k["path"] for k in young.kept} == {SHORT, "zarr.json.3c4d.partial"}
    assert not old_partial.exists() and (pool / SHORT).exists()

    dry = collect_garbage(pool, now=time.time() + 2 * DAY, dry_run=True)
    assert {r["path"] for r in dry.removed} == {SHORT, "zarr.json.3c4d.partial"}
    assert _files(pool) == before - {str(old_partial.relative_to(pool))}  # nothing removed

    done = collect_garbage(pool, now=time.time() + 2 * DAY)
    assert done.bytes_freed == dry.bytes_freed > 0
    assert not (pool / SHORT).exists() and not young_partial.exists()
    left = _files(pool)
    assert not any(name.startswith(SHORT) for name in left)
    assert list(open_pool(pool)) == SYNTH.events([(0, i) for i in range(24)])
    report = verify_pool(pool)
    assert report.ok and not report.warnings, report.warnings
    assert collect_garbage(pool, now=time.time() + 2 * DAY).removed == []  # nothing more


def test_a_reader_open_during_the_removal_reads_every_event(tmp_path: Path) -> None:
    """A reader that opened the pool after the extension never reads the superseded block:
    it reads on, unharmed, while `bgcache gc --grace 0s` removes it in another process."""
    pool = _extended(tmp_path)
    expected = SYNTH.events([(0, i) for i in range(24)])
    reader = open_pool(pool)
    failures: list[BaseException] = []
    passes = [0]
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                reader.refresh()
                assert list(reader) == expected
                passes[0] += 1
        except BaseException as exc:  # handed to the test
            failures.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        argv = [sys.executable, "-m", "bgcache", "gc", str(pool), "--grace", "0s"]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert run.returncode == 0, run.stderr
    assert "removed superseded block" in run.stdout
    assert not failures, failures
    assert passes[0] > 0 and not (pool / SHORT).exists()


def test_an_overlay_open_before_the_extension_fails_clearly_when_gc_removes_its_block(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A reader that opened the pool before the extension (so it reads the short block) and
    keeps it open past a grace period of 0 s: once gc removed the short block, its next read
    of it is a CorruptBlockError naming the block, never a wrong event."""
    pool = tmp_path / "pool"
    build_pool(pool, model="synthetic", events=20, block_events=8)
    expected = SYNTH.events([(0, i) for i in range(24)])
    drawn = []
    with PoolOverlay(pool, on_exhausted="reuse", prefetch=0) as overlay:  # blocks 0, 1, 2~4
        for _ in range(20):  # one pass: every event, from the short block too
            drawn.append((overlay.next_event(), overlay.last))
        build_pool(pool, model="synthetic", events=24)  # 2~4 superseded by 2
        done = cli("gc", str(pool), "--grace", "0s")
        assert done.exit_code == 0 and f"removed superseded block {SHORT}" in done.stdout
        with pytest.raises(CorruptBlockError, match=SHORT) as failed:
            for _ in range(20):
                drawn.append((overlay.next_event(), overlay.last))
    assert "(seed 0, indices 16..19)" in str(failed.value)
    assert len(drawn) >= 20
    for event, last in drawn:
        assert last is not None and event == expected[last[1].index]


def test_gc_30_times_during_a_build(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """gc with a grace period of 0 s over and over (the command line once, then the API it
    calls) while a build extends the pool: the build ends well and its pool is an
    uninterrupted build's. Before gc kept young partial files, it removed the build's
    temporary files before their rename and the build failed."""
    pool = _extended(tmp_path)
    argv = [sys.executable, "-m", "bgcache", "build", str(pool), "-m", "synthetic", "-n", "48"]
    build = subprocess.Popen(
        [*argv, "-q", "--batch-events", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = 0
    try:
        done = cli("gc", str(pool), "--grace", "0s")
        assert done.exit_code == 0, done.stderr
        while build.poll() is None or runs < 30:
            collect_garbage(pool, grace_seconds=0)
            runs += build.poll() is None
            time.sleep(0.01)  # the build gets the other core's share too
    finally:
        _, err = build.communicate(timeout=120)
    assert build.returncode == 0, err
    print(f"{runs} gc runs during the build")
    assert runs >= 30
    assert list(open_pool(pool)) == SYNTH.events([(0, i) for i in range(48)])
    report = verify_pool(pool)
    assert report.ok and not report.warnings, report.warnings


def test_gc_command_line(tmp_path: Path, cli: Callable[..., Any]) -> None:
    pool = _extended(tmp_path)
    dry = cli("gc", str(pool), "--grace", "0s", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"would remove superseded block {SHORT}" in dry.stdout
    assert "would remove 1 superseded block and 0 partial files" in dry.stdout
    kept = cli("gc", str(pool), "--json")
    record = json.loads(kept.stdout)
    assert record["removed"] == [] and record["kept"][0]["path"] == SHORT
    assert record["grace_seconds"] == DAY
    done = cli("gc", str(pool), "--grace", "0s")
    assert "removed 1 superseded block and 0 partial files" in done.stdout
    assert not (pool / SHORT).exists()


@pytest.mark.parametrize("grace", ["-1h", "soon", "2 weeks"])
def test_bad_grace_is_a_usage_error(tmp_path: Path, cli: Callable[..., Any], grace: str) -> None:
    pool = _extended(tmp_path)
    result = cli("gc", str(pool), "--grace", grace)
    assert result.exit_code == 2 and "duration" in result.stderr, result.stderr
    assert (pool / SHORT).exists()
