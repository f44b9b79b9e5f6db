"""Pools on an S3-compatible object store: a real moto server started on 127.0.0.1 by the
tests (``moto_server``), reached through boto3 like any S3 endpoint. Build, append,
inspect, verify, overlay draws, a killed writer, and two concurrent shard writers."""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

import bgcache
from bgcache.build import build_pool
from bgcache.errors import NotAPoolError, PoolNotFoundError, PoolWriteError
from bgcache.overlay import PoolOverlay
from bgcache.store import open_pool
from bgcache.store.verify import verify_pool

Files = Callable[[object], dict[str, bytes]]  # the pool_files fixture of conftest.py
SYNTH = bgcache.load_model("synthetic")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 and the environment that points boto3 at it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    exe = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture
def bucket(
    s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """A new bucket for each test; boto3 is pointed at the server through the environment."""
    import boto3

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    name = "pools-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_build_read_append_verify(bucket: str, tmp_path: Path, pool_files: Files) -> None:
    url = f"s3://{bucket}/demo/pool.zarr"
    r = build_pool(url, model="synthetic", seed=3, events=20, block_events=8)
    assert (r.blocks_written, r.pool_events) == (3, 20)
    build_pool(url, model="synthetic", seed=3, events=30)  # extend: block 2 becomes full
    build_pool(url, model="synthetic", seed=8, events=4)  # another stream
    pool = open_pool(url)
    assert pool.url == url
    assert pool.streams() == {3: [(0, 30)], 8: [(0, 4)]}
    assert list(pool) == SYNTH.events([(3, i) for i in range(30)]) + SYNTH.events(
        [(8, i) for i in range(4)]
    )
    assert pool.event_by_key(3, 17) == SYNTH.events([(3, 17)])[0]
    report = verify_pool(url)
    assert report.ok and report.events == 34
    info = pool.describe()
    assert info["events"] == 34 and 50_000 < info["bytes_per_event"] < 150_000
    # the same keys on a local disk: the same column bytes
    import boto3

    s3 = boto3.client("s3")
    local = tmp_path / "local"
    build_pool(local, model="synthetic", seed=3, events=30, block_events=8)
    remote = {}
    for key, _ in pool.storage.walk():
        parts = key.split("/")
        if len(parts) > 4 and parts[1] == "0000000000000003":
            body = s3.get_object(Bucket=bucket, Key=f"demo/pool.zarr/{key}")["Body"].read()
            remote[key] = body
    expected = pool_files(local)
    assert {key: remote.get(key) for key in expected} == expected
    assert set(remote) - set(expected) == {  # the short block the extension superseded
        k for k in remote if "/2~4/" in k
    }


def test_cli_on_s3(bucket: str, cli: Callable[..., object]) -> None:
    url = f"s3://{bucket}/p"
    built = cli("build", url, "-m", "synthetic", "-n", "12", "--block-events", "4", "-q", "--json")  # type: ignore[operator]
    assert built.exit_code == 0, built.stderr  # type: ignore[attr-defined]
    inspected = cli("inspect", url, "--json")  # type: ignore[operator]
    assert json.loads(inspected.stdout)["events"] == 12  # type: ignore[attr-defined]
    verified = cli("verify", url, "-q")  # type: ignore[operator]
    assert verified.exit_code == 0 and verified.stdout.startswith("OK")  # type: ignore[attr-defined]
    planned = cli("plan", url, "-j", "2", "-n", "6", "--json")  # type: ignore[operator]
    assert json.loads(planned.stdout)["from_pool"] == 12  # type: ignore[attr-defined]


def test_overlay_draws_from_s3(bucket: str) -> None:
    url = f"s3://{bucket}/p"
    build_pool(url, model="synthetic", events=24, block_events=8)
    pool = open_pool(url)
    with PoolOverlay(url, seed=4, job=1, njobs=2) as overlay:
        events = [overlay.next_event() for _ in range(14)]
        assert overlay.stats.from_pool == 12 and overlay.stats.generated == 2
    keys = [pool.key(p) for p in range(12, 24)]
    assert all(ev in [pool.event_by_key(*k) for k in keys] for ev in events[:12])


def test_errors_on_s3(bucket: str, s3_server: dict[str, str]) -> None:
    with pytest.raises(PoolNotFoundError, match="does not exist"):
        open_pool(f"s3://{bucket}/nothing-here")
    with pytest.raises(PoolWriteError, match="does not exist; create it first"):
        build_pool("s3://no-such-bucket-here/p", model="synthetic", events=2)
    import boto3

    boto3.client("s3").put_object(Bucket=bucket, Key="other/readme.txt", Body=b"x")
    with pytest.raises(NotAPoolError, match="not a pool"):
        build_pool(f"s3://{bucket}/other", model="synthetic", events=2)


def _env(server: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **server}


def test_two_concurrent_shard_writers(
    bucket: str, s3_server: dict[str, str], tmp_path: Path, pool_files: Files
) -> None:
    url = f"s3://{bucket}/shared"
    cmd = [
        sys.executable,
        "-m",
        "bgcache",
        "build",
        url,
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
        subprocess.Popen([*cmd, f"{k}/2"], env=_env(s3_server), stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    pool = open_pool(url)
    assert pool.streams() == {6: [(0, 96)]}
    assert list(pool) == SYNTH.events([(6, i) for i in range(96)])
    report = verify_pool(pool)
    assert report.ok and not report.warnings, report.warnings


def test_killed_writer_leaves_nothing_readable(bucket: str, s3_server: dict[str, str]) -> None:
    import signal

    url = f"s3://{bucket}/killed"
    cmd = [
        sys.executable,
        "-m",
        "bgcache",
        "build",
        url,
        "-m",
        "synthetic",
        "-n",
        "400",
        "--block-events",
        "16",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, env=_env(s3_server))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if len(open_pool(url)) >= 48:
                break
        except (PoolNotFoundError, NotAPoolError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pool = open_pool(url)
    assert 0 < len(pool) < 400
    assert list(pool) == SYNTH.events([(0, i) for i in range(len(pool))])
    assert verify_pool(pool).ok
    build_pool(url, model="synthetic", events=400)
    pool.refresh()
    assert len(pool) == 400 and verify_pool(pool).ok


def test_pool_reads_in_a_forked_child(bucket: str) -> None:
    """basf2's multiprocessing, DataLoader workers and build workers fork after the pool is
    open: the child must read through it (obstore's client hangs there, benchmarks/s3.py)."""
    url = f"s3://{bucket}/forked"
    build_pool(url, model="synthetic", seed=2, events=12, block_events=4)
    pool = open_pool(url)
    assert pool.event_by_key(2, 1) == SYNTH.events([(2, 1)])[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child, which exits by itself if it hangs)
        faulthandler.dump_traceback_later(60, exit=True)
        try:
            same = pool.event_by_key(2, 9) == SYNTH.events([(2, 9)])[0]
            os.write(w, b"ok" if same and len(open_pool(url)) == 12 else b"differs")
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as pipe:
        assert pipe.read() == b"ok", "the forked child did not read the pool within 60 s"


def test_gc_on_s3(bucket: str) -> None:
    """The superseded short block goes (marker first); the pool reads the same."""
    from bgcache.store.gc import collect_garbage

    url = f"s3://{bucket}/gc"
    build_pool(url, model="synthetic", events=20, block_events=8)
    build_pool(url, model="synthetic", events=24)
    assert collect_garbage(url).removed == []  # the full block is younger than a day
    done = collect_garbage(url, now=time.time() + 2 * 86400)
    assert [r["path"] for r in done.removed] == ["streams/0000000000000000/2~4"]
    pool = open_pool(url)
    assert not [k for k, _ in pool.storage.walk() if "/2~4/" in k]
    assert list(pool) == SYNTH.events([(0, i) for i in range(24)])
    assert verify_pool(pool).ok and not verify_pool(pool).warnings


def test_objects_larger_than_their_kind_are_refused_on_s3(bucket: str) -> None:
    """The caps of a local disk hold on S3: a root record of 16 MiB + 1 byte is refused from
    the size the ranged answer gives (one request, never read whole), a shard one byte above
    the most its block's hits can need is damage to that block (verify names it)."""
    import boto3
    import numpy as np

    from bgcache.errors import PoolObjectError
    from bgcache.store.records import MAX_DOCUMENT_BYTES
    from bgcache.store.shards import shard_nbytes_bound

    url = f"s3://{bucket}/capped"
    build_pool(url, model="synthetic", events=8, block_events=4)
    pool = open_pool(url)
    info = pool.block_list[1]
    record, _ = pool.block_marker(info)
    bound = shard_nbytes_bound(int(record["n_hits"]), pool.layout.chunk_hits, np.dtype("<u4"))
    s3 = boto3.client("s3")
    key = f"capped/{info.path}/index/c/0"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body.ljust(bound + 1, b"\0"))
    report = verify_pool(url)
    assert {f.path for f in report.problems} == {info.path}, report.problems
    assert any(f"more than the {bound:,}" in f.message for f in report.problems), report.problems
    s3.put_object(Bucket=bucket, Key="capped/zarr.json", Body=b" " * (MAX_DOCUMENT_BYTES + 1))
    with pytest.raises(PoolObjectError, match="holds 16,777,217 bytes, more than the 16,777,216"):
        open_pool(url)


def test_listings_are_bounded_on_s3(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory of more names than a pool's can hold, and a walk of more objects, are
    refused (the bounds shortened here to 5 and 12: moto would take minutes to list 100,000
    objects), each a page at a time."""
    from bgcache.errors import StorageServerError
    from bgcache.store import s3
    from bgcache.store.pool import open_storage

    storage = open_storage(f"s3://{bucket}/many")
    for i in range(8):
        storage.write(f"d/{i}", b"x")
        storage.write(f"e/{i}", b"x")
    monkeypatch.setattr(s3, "PAGE_KEYS", 3)  # several pages per listing
    assert storage.children("d") == [str(i) for i in range(8)]
    assert len(list(storage.walk())) == 16
    monkeypatch.setattr(s3, "MAX_LISTING_ENTRIES", 5)
    monkeypatch.setattr(s3, "MAX_WALK_OBJECTS", 12)
    with pytest.raises(StorageServerError, match="more than the 100,000 entries"):
        storage.children("d")
    with pytest.raises(StorageServerError, match="more than 12 objects"):
        list(storage.walk())


def test_a_silent_s3_endpoint_ends_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint that accepts connections and never answers: botocore's read timeout
    ends the first attempt at the deadline ($BGCACHE_REMOTE_TIMEOUT=2), and no retry follows
    it (botocore's own retries would have taken 5 attempts and their back-off)."""
    import contextlib
    import threading

    from bgcache.errors import StorageServerError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conns.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "BGCACHE_REMOTE_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageServerError, match="within the 2 s deadline"):
            open_pool("s3://bucket/pool")
        assert time.monotonic() - t0 < 6
    finally:
        stop.set()
        thread.join()
        for conn in conns:
            conn.close()
        listener.close()
