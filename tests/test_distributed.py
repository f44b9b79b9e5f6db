"""Builds on a real Dask cluster on 127.0.0.1: a LocalCluster of two worker processes, and a
``dask scheduler`` / ``dask worker`` pair started as subprocesses, one of them killed mid-build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from bgcache.build import build_pool
from bgcache.errors import SchedulerError
from bgcache.store import open_pool
from bgcache.store.verify import verify_pool

Files = Callable[[object], dict[str, bytes]]  # the pool_files fixture of conftest.py


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local.scheduler_address


def test_local_cluster_build_is_byte_identical(
    tmp_path: Path, cluster: str, pool_files: Files
) -> None:
    r = build_pool(
        tmp_path / "d", model="synthetic", seed=5, events=80, block_events=8, scheduler=cluster
    )
    assert (r.blocks_written, r.events_written, r.pool_events) == (10, 80, 80)
    assert r.generate_seconds > 0 and r.bytes_written > 0
    build_pool(tmp_path / "ref", model="synthetic", seed=5, events=80, block_events=8)
    assert pool_files(tmp_path / "d") == pool_files(tmp_path / "ref")
    report = verify_pool(tmp_path / "d")
    assert report.ok and not report.warnings


def test_rerun_on_the_cluster_completes_only_what_is_missing(tmp_path: Path, cluster: str) -> None:
    build_pool(tmp_path / "p", model="synthetic", events=40, block_events=8, scheduler=cluster)
    r = build_pool(tmp_path / "p", model="synthetic", events=80, scheduler=cluster)
    assert (r.blocks_skipped, r.blocks_written) == (5, 5)
    assert open_pool(tmp_path / "p").streams() == {0: [(0, 80)]}


def test_cli_build_with_scheduler(cli: Callable[..., object], tmp_path: Path, cluster: str) -> None:
    result = cli(
        "build",
        str(tmp_path / "p"),
        "-m",
        "synthetic",
        "-n",
        "24",
        "--block-events",
        "8",
        "--scheduler",
        cluster,
        "-q",
        "--json",
    )  # type: ignore[operator]
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert json.loads(result.stdout)["events_written"] == 24  # type: ignore[attr-defined]


def test_unreachable_scheduler_fails_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bgcache.distributed

    monkeypatch.setattr(bgcache.distributed, "CONNECT_TIMEOUT", 2)
    with pytest.raises(SchedulerError, match="cannot connect to the Dask scheduler"):
        build_pool(tmp_path / "p", model="synthetic", events=8, scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "p").exists()


def _dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("dask")
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(exe), *args], stdout=out, stderr=subprocess.STDOUT)


def test_killed_worker_the_build_still_completes(tmp_path: Path, pool_files: Files) -> None:
    """A scheduler and two workers as separate processes; one worker is killed (SIGKILL) once
    a few blocks are complete. Dask moves its tasks to the other worker; the pool ends up
    complete and byte-identical to a single-process build."""
    info = tmp_path / "scheduler.json"
    procs = [
        _dask(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
            log=tmp_path / "scheduler.log",
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for k in range(2):
            procs.append(
                _dask(
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    f"w{k}",
                    log=tmp_path / f"worker{k}.log",
                )
            )
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        pool = tmp_path / "p"
        cmd = [
            sys.executable,
            "-m",
            "bgcache",
            "build",
            str(pool),
            "-m",
            "synthetic",
            "-n",
            "1200",
            "--block-events",
            "8",
            "--scheduler",
            address,
            "--quiet",
            "--json",
        ]
        build = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(pool.glob("streams/*/*/zarr.json"))) < 10:
            time.sleep(0.02)
        os.kill(procs[1].pid, signal.SIGKILL)  # worker w0, mid-build
        out, err = build.communicate(timeout=300)
        assert build.returncode == 0, err
        assert json.loads(out)["pool_events"] == 1200
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert procs[1].returncode == -signal.SIGKILL
    build_pool(tmp_path / "ref", model="synthetic", events=1200, block_events=8)
    assert pool_files(pool) == pool_files(tmp_path / "ref")
    assert verify_pool(pool).ok  # leftovers of the killed worker are warnings at most
