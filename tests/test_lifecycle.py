"""Processes and threads that must not outlive what started them: a build's worker
processes after kill -9 of the build, and an overlay's threads after it is dropped
without ``close()``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("moment", [0.0, 1.5, 4.0])
def test_workers_die_with_a_killed_build(tmp_path: Path, moment: float) -> None:
    """kill -9 of `bgcache build --workers 2` at three moments (workers starting, loading,
    writing): every worker process ends within seconds."""
    pool = tmp_path / "pool"
    argv = [sys.executable, "-m", "bgcache", "build", str(pool), "-m", "synthetic"]
    proc = subprocess.Popen([*argv, "-n", "100000", "--block-events", "64", "--workers", "2", "-q"])
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert workers, "the build started no worker processes"
    time.sleep(moment)
    workers = sorted(set(workers) | set(_children(proc.pid)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if _alive(w)]
    for w in alive:  # do not leave them to the next test
        os.kill(w, signal.SIGKILL)
    assert not alive, f"{len(alive)} of {len(workers)} worker processes outlived the build"


def test_dropped_overlays_stop_their_threads(tmp_path: Path) -> None:
    """Overlays dropped without close() (prefetch and decode threads running, queues full)
    end their threads and free their source: the live thread count returns to where it was."""
    import gc
    import threading
    import weakref

    from bgcache.build import build_pool
    from bgcache.overlay import PoolOverlay
    from bgcache.store import open_pool

    build_pool(tmp_path / "pool", model="synthetic", events=96, block_events=16)
    pool = open_pool(tmp_path / "pool")
    before = threading.active_count()
    sources = []
    for seed in range(40):
        overlay = PoolOverlay(pool, seed=seed, prefetch=4, prefetch_threads=2)
        overlay.next_event()
        sources.append(weakref.ref(overlay._source))
        del overlay
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        gc.collect()
        if threading.active_count() <= before and not any(ref() for ref in sources):
            break
        time.sleep(0.1)
    assert threading.active_count() <= before, f"{threading.active_count() - before} threads left"
    assert not any(ref() for ref in sources), "a dropped overlay's source is still alive"
