"""Pools on the grid: XRootD (``root://``) and WebDAV (``dav://``, as ``davs://`` without TLS)
on real servers that the tests start on 127.0.0.1.

* XRootD: Debian's ``xrootd`` server (package ``xrootd-server``; ``.ci/run`` installs it),
  reached through the XRootD client (the ``xrootd`` Python package);
* WebDAV: wsgidav on cheroot (``tests/webdav_server.py``), behind a stand-in of a storage
  element's bearer-token check, reached through bgcache's own requests on httpx.

Each test runs on both (the ``grid`` fixture): build, append, inspect, verify, compare,
overlay draws, a killed writer and its resume, two shard writers at once, forked readers,
and the errors (unreachable server, missing pool, a path the server will not let us write,
and for WebDAV an expired and a read-only token). Each server serves a directory of the
test's; the pool's files there are compared with a build on a local disk, byte for byte.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bgcache
from bgcache.build import build_pool
from bgcache.overlay import PoolOverlay
from bgcache.store import open_pool
from bgcache.store.verify import verify_pool

Files = Callable[[object], dict[str, bytes]]  # the pool_files fixture of conftest.py
SYNTH = bgcache.load_model("synthetic")
PY = [sys.executable, "-m", "bgcache"]
sys.path.insert(0, str(Path(__file__).parent))
from grid_servers import free_port, start_webdav, start_xrootd  # noqa: E402


def _xrootd_servers(base: Path) -> Iterator[dict[str, Any]]:
    """A read-write and a read-only xrootd server. Their directories are under the system's
    temp directory, not pytest's: as root the server runs as ``xrootd``, which cannot enter
    pytest's private ``/tmp/pytest-of-root``."""
    pytest.importorskip(
        "XRootD", reason="root:// pools need the XRootD client: pip install 'bgcache[xrootd]'"
    )
    if shutil.which("xrootd") is None:
        pytest.skip("no xrootd server: install it with 'apt-get install xrootd-server' (CI does)")
    procs = []
    try:
        proc, port, data = start_xrootd(base / "rw")
        procs.append(proc)
        ro_proc, ro_port, _ = start_xrootd(base / "ro", read_only=True)
        procs.append(ro_proc)
        yield {
            "kind": "xrootd",
            "url": f"root://127.0.0.1:{port}/",
            "data": data,
            "ro": f"root://127.0.0.1:{ro_port}/",
            "env": {},
        }
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def _webdav_server(base: Path) -> Iterator[dict[str, Any]]:
    """wsgidav behind the token check of ``tests/webdav_server.py``; the tests' token is
    ``rw-token`` (``$BEARER_TOKEN``), the read-only URL is the same server with ``ro-token``."""
    pytest.importorskip("httpx", reason="davs:// pools need httpx: pip install 'bgcache[webdav]'")
    pytest.importorskip(
        "wsgidav", reason="the WebDAV tests' server is wsgidav: pip install wsgidav cheroot"
    )
    proc, port, data = start_webdav(base)
    try:
        yield {
            "kind": "webdav",
            "url": f"dav://127.0.0.1:{port}",
            "data": data,
            "ro": f"dav://127.0.0.1:{port}",
            "ro_env": {"BEARER_TOKEN": "ro-token"},
            "env": {"BEARER_TOKEN": "rw-token"},
        }
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture(scope="module", params=["xrootd", "webdav"])
def grid(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """One storage server of each protocol, with what the tests need to reach it."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix=f"bgcache-{request.param}-"))
    base.chmod(0o755)
    try:
        servers = _xrootd_servers if request.param == "xrootd" else _webdav_server
        yield from servers(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(grid: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in grid["env"].items():
        monkeypatch.setenv(name, value)
    return grid


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGCACHE_REMOTE_TIMEOUT", "10")


def test_build_read_append_verify(
    server: dict[str, Any], tmp_path: Path, pool_files: Files
) -> None:
    url = server["url"] + "/pools/demo"
    r = build_pool(url, model="synthetic", seed=3, events=20, block_events=8)
    assert (r.blocks_written, r.pool_events) == (3, 20)
    early = open_pool(url)  # a reader that stays open across the writes below
    assert early.event(19) == SYNTH.events([(3, 19)])[0]
    build_pool(url, model="synthetic", seed=3, events=30)  # extend: block 2 becomes full
    build_pool(url, model="synthetic", seed=8, events=4)  # another stream
    pool = open_pool(url)
    assert pool.url == url.replace("//pools", "//pools")
    assert pool.streams() == {3: [(0, 30)], 8: [(0, 4)]}
    assert list(pool) == SYNTH.events([(3, i) for i in range(30)]) + SYNTH.events(
        [(8, i) for i in range(4)]
    )
    assert verify_pool(url).ok
    early.refresh()  # sees what was written since, the replaced root record included
    assert early.streams() == {3: [(0, 30)], 8: [(0, 4)]}
    assert early.event_by_key(3, 23) == SYNTH.events([(3, 23)])[0]
    # the same storage (its files kept open) reads the replaced root record, not the old one
    assert open_pool(early.storage).record["streams"] == pool.record["streams"]
    local = tmp_path / "local"
    build_pool(local, model="synthetic", seed=3, events=30, block_events=8)
    build_pool(local, model="synthetic", seed=8, events=4)
    remote = pool_files(server["data"] / "pools" / "demo")
    expected = pool_files(local)
    assert {k: remote.get(k) for k in expected} == expected
    assert not list((server["data"] / "pools" / "demo").rglob("*.partial"))


def test_cli_on_the_grid(server: dict[str, Any], cli: Callable[..., Any]) -> None:
    url = server["url"] + "/pools/cli"
    built = cli("build", url, "-m", "synthetic", "-n", "12", "--block-events", "4", "-q", "--json")
    assert built.exit_code == 0, built.stderr
    inspected = cli("inspect", url, "--json")
    assert json.loads(inspected.stdout)["events"] == 12
    verified = cli("verify", url, "-q")
    assert verified.exit_code == 0 and verified.stdout.startswith("OK")
    compared = cli("compare", url, url, "--sample", "3", "-q", "--json")
    assert json.loads(compared.stdout)["occupancy"]["overall"]["ratio"] == 1.0


def test_overlay_draws_from_the_grid(server: dict[str, Any]) -> None:
    url = server["url"] + "/pools/overlay"
    build_pool(url, model="synthetic", events=24, block_events=8)
    with PoolOverlay(url, seed=4, job=1, njobs=2) as overlay:
        events = [overlay.next_event() for _ in range(14)]
        keys = [overlay.last]
        assert overlay.stats.from_pool == 12 and overlay.stats.generated == 2
    pool = open_pool(url)
    share = [pool.event(p) for p in range(12, 24)]
    assert all(ev in share for ev in events[:12]) and keys


def test_a_killed_writer_resumes_byte_identical(
    server: dict[str, Any], tmp_path: Path, pool_files: Files
) -> None:
    url = server["url"] + "/pools/killed"
    argv = [*PY, "build", url, "-m", "synthetic", "-n", "48", "--block-events", "4", "-q"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    where = server["data"] / "pools" / "killed"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(where.glob("streams/*/*/zarr.json"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the build finished before it was killed"
    survived = open_pool(url)
    assert 0 < len(survived) < 48
    assert list(survived) == SYNTH.events(
        [(0, survived.key(p).index) for p in range(len(survived))]
    )
    subprocess.run(argv, check=True, timeout=300)
    local = tmp_path / "local"
    build_pool(local, model="synthetic", events=48, block_events=4)
    assert pool_files(where) == pool_files(local)
    assert verify_pool(url).ok


def test_two_shard_writers_at_once(
    server: dict[str, Any], tmp_path: Path, pool_files: Files
) -> None:
    """Both create the pool (the claim decides who writes the root record), then fill their
    halves of the range at the same time."""
    url = server["url"] + "/pools/shards"
    argv = [*PY, "build", url, "-m", "synthetic", "-n", "64", "--block-events", "8", "-q"]
    procs = [
        subprocess.Popen([*argv, "--shard", f"{k}/2"], stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    ended = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in ended]
    pool = open_pool(url)
    assert len(pool) == 64 and verify_pool(url).ok
    local = tmp_path / "local"
    build_pool(local, model="synthetic", events=64, block_events=8)
    assert pool_files(server["data"] / "pools" / "shards") == pool_files(local)


def test_a_reader_never_sees_half_of_a_replaced_document(server: dict[str, Any]) -> None:
    """Two writers replace the root document with versions of other lengths (as every
    writer rewrites the root record's summary when it ends) while a reader reads it: no
    write fails, and every read is one whole version, never a mix and never "missing".

    A stat followed by a read by name failed this on XRootD (two shard writers saw invalid
    JSON). wsgidav's MOVE deletes the target before it renames and takes a GET's length from
    the old version and its bytes from the new: before the reads told torn answers from
    settled ones, a GET meanwhile got 404, 500 or a cut document, and a second writer's MOVE
    failed with 500 on the target the first had deleted (101 of 450 writes of three
    writers); a GET whose body was shorter than its Content-Length waited for the timeout."""
    import threading

    from bgcache.store.pool import open_storage

    url = server["url"] + "/pools/replaced"
    first = open_storage(url)
    first.check_writable()  # creates the location, as a build does first
    first.write("zarr.json", b'{"v": "first"}')
    first.write("streams/zarr.json", b'{"kind": "streams"}')  # a pool's, made after the root
    versions = {b'{"v": "first"}'}
    batches = [
        [json.dumps({"w": w, "v": i, "pad": "x" * (i * 37 % 900)}).encode() for i in range(80)]
        for w in range(2)
    ]
    for batch in batches:
        versions.update(batch)
    stop = threading.Event()
    seen: list[bytes | None] = []
    failed: list[BaseException] = []

    def read() -> None:
        reader = open_storage(url)
        while not stop.is_set():
            seen.append(reader.read("zarr.json", 1 << 20))

    def write(batch: list[bytes]) -> None:
        writer = open_storage(url)
        try:
            for data in batch:
                writer.write("zarr.json", data)
        except BaseException as exc:
            failed.append(exc)

    readers = [threading.Thread(target=read)]
    writers = [threading.Thread(target=write, args=(b,)) for b in batches]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    readers[0].join()
    assert not failed, failed
    assert len(seen) > 20
    assert None not in seen, "a read found no document while it was being replaced"
    assert all(data in versions for data in seen), "a read returned a mix of two versions"
    assert first.read("zarr.json") in {batches[0][-1], batches[1][-1]}
    assert not [n for n in first.children("") if n.endswith(".partial")], "partials left"


def test_listings_beside_writers_that_create_never_fail(server: dict[str, Any]) -> None:
    """Two writers create documents in one directory (a claim directory, a partial file, a
    rename, the claim removed: what two shard writers do in a stream) while a reader lists
    it: no listing fails and none shows a document twice.

    wsgidav's PROPFIND lists the names, then stats each, and answers 500 when one of them
    was renamed or removed meanwhile: two shard writers at once failed a CI run on a listing
    of their stream, and this test failed every run before listings were tried again."""
    import threading

    from bgcache.store.pool import open_storage

    url = server["url"] + "/pools/listed"
    open_storage(url).check_writable()
    stop = threading.Event()
    listings: list[list[str]] = []
    failed: list[BaseException] = []

    def lister() -> None:
        reader = open_storage(url)
        try:
            while not stop.is_set():
                listings.append(reader.children("d"))
                listings.append([key for key, _ in reader.walk("d")])
        except BaseException as exc:
            failed.append(exc)

    def create(w: int) -> None:
        writer = open_storage(url)
        try:
            for i in range(40):
                assert writer.write_new(f"d/doc{w}_{i:02d}.json", b"{}")
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=lister)]
    threads += [threading.Thread(target=create, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    stop.set()
    threads[0].join()
    assert not failed, failed
    assert len(listings) > 4
    assert all(len(names) == len(set(names)) for names in listings)
    assert open_storage(url).children("d") == sorted(
        f"doc{w}_{i:02d}.json" for w in range(2) for i in range(40)
    )


def test_a_rename_whose_answer_failed_is_not_repeated(
    server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename the server did but answered with an error (the answer lost) counts as done:
    the partial object is gone. One that failed with the partial still there is repeated;
    one that keeps failing is reported, and its partial removed."""
    from bgcache.store import remote
    from bgcache.store.pool import open_storage

    storage = open_storage(server["url"] + "/pools/renamed")
    storage.check_writable()
    real = storage._move
    calls: list[str] = []

    def moved_then_failed(source: str, target: str) -> None:
        calls.append(source)
        real(source, target)
        raise remote.TransientServerError("HTTP 502 (a proxy lost the answer)")

    monkeypatch.setattr(storage, "_move", moved_then_failed)
    storage.write("doc.json", b"1")
    assert len(calls) == 1 and storage.read("doc.json") == b"1"

    def failed(source: str, target: str) -> None:
        calls.append(source)
        raise remote.TransientServerError("HTTP 500")

    monkeypatch.setattr(storage, "_move", failed)
    monkeypatch.setattr(remote, "MOVE_RETRIES", 2)
    with pytest.raises(remote.TransientServerError):
        storage.write("doc.json", b"2")
    assert len(calls) == 1 + 3 and storage.read("doc.json") == b"1"
    assert not [n for n in storage.children("") if n.endswith(".partial")]


def test_a_missing_or_damaged_root_record_is_told_at_once(
    server: dict[str, Any], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reads that wait out a replacement believe a missing root record at once where no
    pool exists yet, and a damaged one once two reads agree; only a root record missing
    from an existing pool (its streams group there) is waited for, REPLACE_WAIT seconds."""
    from bgcache.store import webdav
    from bgcache.store.pool import open_storage

    url = server["url"] + "/pools/settled"
    storage = open_storage(url)
    storage.check_writable()
    start = time.monotonic()
    assert storage.read("zarr.json") is None  # a new pool: no streams group yet
    storage.write("zarr.json", b'{"format": "bgcache-po')  # damaged: cut
    storage.write("streams/zarr.json", b'{"kind": "streams"}')
    assert storage.read("zarr.json") == b'{"format": "bgcache-po'
    assert time.monotonic() - start < 5
    damaged = cli("inspect", url)
    assert damaged.exit_code == 1 and "not valid JSON" in _one_line(damaged)
    if server["kind"] != "webdav":
        return
    monkeypatch.setattr(webdav, "REPLACE_WAIT", 1.0)
    storage.delete("zarr.json")  # removed from an existing pool: waited for, then missing
    start = time.monotonic()
    assert storage.read("zarr.json") is None
    assert 1.0 <= time.monotonic() - start < 5


def test_pool_reads_in_forked_children(server: dict[str, Any]) -> None:
    """basf2's multiprocessing and DataLoader workers fork after the pool is open (and its
    files are): each child reads through it within 60 s."""
    url = server["url"] + "/pools/forked"
    build_pool(url, model="synthetic", seed=2, events=12, block_events=4)
    pool = open_pool(url)
    assert pool.event_by_key(2, 1) == SYNTH.events([(2, 1)])[0]
    for n in range(5):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child, which exits by itself if it hangs)
            faulthandler.dump_traceback_later(60, exit=True)
            try:
                same = pool.event_by_key(2, 9 - n) == SYNTH.events([(2, 9 - n)])[0]
                os.write(w, b"ok" if same and len(open_pool(url)) == 12 else b"differs")
            finally:
                os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        with os.fdopen(r, "rb") as pipe:
            assert pipe.read() == b"ok", f"forked child {n} did not read the pool within 60 s"
        assert pool.event_by_key(2, n) == SYNTH.events([(2, n)])[0]  # the parent reads on


def test_objects_larger_than_their_kind_are_refused(
    server: dict[str, Any], cli: Callable[..., Any]
) -> None:
    """The caps of a local disk hold on the servers: a shard one byte above the most its
    block's hits can need is damage to that block (verify names it; the API refuses the
    block), and a 1 GiB root record is refused from its size, before it is read: one line,
    within a few seconds, in a reader that stays small (XRootD: the open file's size;
    WebDAV: the size the ranged answer announces). A walk stops 16 directories deep."""
    import numpy as np

    from bgcache.errors import CorruptBlockError
    from bgcache.store.shards import shard_nbytes_bound

    url = server["url"] + "/pools/capped"
    build_pool(url, model="synthetic", events=8, block_events=4)
    pool = open_pool(url)
    info = pool.block_list[1]
    record, _ = pool.block_marker(info)
    bound = shard_nbytes_bound(int(record["n_hits"]), pool.layout.chunk_hits, np.dtype("<u4"))
    where = server["data"] / "pools" / "capped"
    shard = where / info.path / "index" / "c" / "0"
    shard.write_bytes(shard.read_bytes().ljust(bound + 1, b"\0"))
    report = verify_pool(url)
    assert {f.path for f in report.problems} == {info.path}, report.problems
    assert any(f"more than the {bound:,}" in f.message for f in report.problems), report.problems
    with pytest.raises(CorruptBlockError, match="its kind can"):
        open_pool(url).read_block(info)
    os.truncate(where / "zarr.json", 2**30)  # sparse: nothing to write
    t0 = time.monotonic()
    measure = [sys.executable, str(Path(__file__).with_name("fault_hostile.py")), "measure"]
    with contextlib.ExitStack() as stack:
        import tempfile

        peak = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "peak"
        argv = [*measure, "--limit-as", str(4 * 2**30), str(peak), *PY, "inspect", url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        peak_mib = int(peak.read_text()) / 1024
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert "holds 1,073,741,824 bytes, more than the 16,777,216" in _one_line(done)
    assert time.monotonic() - t0 < 30 and peak_mib < 300, peak_mib
    from bgcache.errors import StorageServerError
    from bgcache.store.pool import open_storage

    (where / "deep" / "/".join(["d"] * 17)).mkdir(parents=True)  # deeper than any pool's
    with pytest.raises(StorageServerError, match="nested deeper than 16"):
        list(open_storage(url).walk())


@pytest.mark.parametrize("scheme", ["root", "dav"])
def test_a_dripping_server_ends_at_the_deadline(scheme: str, tmp_path: Path) -> None:
    """A server that accepts and then sends one byte a second (XRootD: zeros in its
    handshake; WebDAV: a valid status line, byte by byte): the reader ends in one line after
    the deadline ($BGCACHE_REMOTE_TIMEOUT=3), not after an idle timeout per read that each
    byte renews. (Before, with the same 3 s: WebDAV still waited after 45 s; XRootD ended
    after 17 s with "[ERROR] Operation expired", its timeouts checked every 15 s.)"""
    import socket
    import threading

    pytest.importorskip("XRootD" if scheme == "root" else "httpx")
    drip = b"\0" * 600 if scheme == "root" else b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)

    def serve() -> None:
        conns = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conns.append(listener.accept()[0])
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.recv(65536, socket.MSG_DONTWAIT)
            sent = int(time.monotonic()) % len(drip)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.send(drip[sent : sent + 1])
            stop.wait(1.0)
        for conn in conns:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    url = f"root://127.0.0.1:{port}//pool" if scheme == "root" else f"dav://127.0.0.1:{port}/pool"
    try:
        t0 = time.monotonic()
        done = subprocess.run(
            [*PY, "inspect", url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "BGCACHE_REMOTE_TIMEOUT": "3"},
        )
        seconds = time.monotonic() - t0
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert done.returncode == 1
    assert "within the 3 s deadline" in _one_line(done)
    assert seconds < 30, seconds  # the deadline, and starting Python on a busy machine


def _one_line(result: Any) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bgcache: error: "), result.stderr
    return str(lines[0])


def test_errors_are_one_line(
    server: dict[str, Any], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = cli("inspect", server["url"] + "/pools/nowhere")
    assert missing.exit_code == 1 and "does not exist" in _one_line(missing)
    with monkeypatch.context() as m:
        for name, value in server.get("ro_env", {}).items():
            m.setenv(name, value)
        readable = cli("inspect", server["url"] + "/pools/nowhere")
        assert "does not exist" in _one_line(readable)  # a read-only token reads
        denied = cli("build", server["ro"] + "/pools/p", "-m", "synthetic", "-n", "2", "-q")
    assert denied.exit_code == 1
    line = _one_line(denied)
    assert "cannot write to pool" in line
    assert ("read-only" in line) if server["kind"] == "xrootd" else ("permission denied" in line)
    scheme = server["url"].split("://")[0]
    closed = free_port()
    t0 = time.monotonic()
    unreachable = subprocess.run(
        [*PY, "inspect", f"{scheme}://127.0.0.1:{closed}//pools/p"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BGCACHE_REMOTE_TIMEOUT": "2"},
    )
    assert unreachable.returncode == 1
    assert "the server does not answer" in _one_line(unreachable)
    assert time.monotonic() - t0 < 60
    bad = cli("inspect", f"{scheme}://127.0.0.1")
    assert (bad.exit_code == 2 and "names no path" in _one_line(bad)) or "expected" in bad.stderr


def test_expired_and_missing_tokens_are_refused(
    server: dict[str, Any], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """WLCG tokens: an expired one and none at all get one line that says to renew it; the
    token in a file ($BEARER_TOKEN_FILE) works as the variable does; no error line shows it."""
    if server["kind"] != "webdav":
        pytest.skip("the XRootD test server runs without authentication (ztn needs a token issuer)")
    url = server["url"] + "/pools/tokens"
    monkeypatch.setenv("BEARER_TOKEN", "expired-token")
    expired = cli("build", url, "-m", "synthetic", "-n", "2", "-q")
    assert expired.exit_code == 1
    line = _one_line(expired)
    assert "credentials refused (HTTP 401)" in line and "renew" in line
    assert "expired-token" not in line
    monkeypatch.delenv("BEARER_TOKEN")
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    none = cli("inspect", url)
    assert none.exit_code == 1 and "HTTP 401" in _one_line(none)
    (tmp_path / "token").write_text("rw-token\n")
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(tmp_path / "token"))
    built = cli("build", url, "-m", "synthetic", "-n", "2", "-q")
    assert built.exit_code == 0, built.stderr


def test_gc_on_the_grid(server: dict[str, Any]) -> None:
    """The superseded short block goes (marker first, then its directories); the pool reads
    the same."""
    from bgcache.store.gc import collect_garbage

    url = server["url"] + "/pools/gc"
    build_pool(url, model="synthetic", events=20, block_events=8)
    build_pool(url, model="synthetic", events=24)
    done = collect_garbage(url, now=time.time() + 2 * 86400)
    assert [r["path"] for r in done.removed] == ["streams/0000000000000000/2~4"]
    assert not (server["data"] / "pools" / "gc" / "streams" / "0000000000000000" / "2~4").exists()
    pool = open_pool(url)
    assert list(pool) == SYNTH.events([(0, i) for i in range(24)])
    assert verify_pool(pool).ok and not verify_pool(pool).warnings


def test_torch_dataloader_workers_read_the_grid(server: dict[str, Any]) -> None:
    """A PyTorch Dataset over a grid pool, read by two forked DataLoader workers."""
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from bgcache.adapters.torch import PoolDataset, collate_sparse

    url = server["url"] + "/pools/torch"
    build_pool(url, model="synthetic", seed=5, events=10, block_events=4)
    data = PoolDataset(url)
    data[0]  # the pool is open in the parent before the workers fork
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate_sparse)
    keys = [k for batch in loader for k in batch["key"]]
    assert keys == [open_pool(url).key(p) for p in range(10)]


def test_dask_workers_write_to_the_grid(
    server: dict[str, Any], tmp_path: Path, pool_files: Files
) -> None:
    """Each block a task on a Dask worker process, which writes it to the server."""
    pytest.importorskip("distributed")
    from dask.distributed import LocalCluster

    url = server["url"] + "/pools/dask"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        r = build_pool(
            url, model="synthetic", events=32, block_events=8, scheduler=cluster.scheduler_address
        )
    assert (r.blocks_written, r.pool_events) == (4, 32)
    build_pool(tmp_path / "local", model="synthetic", events=32, block_events=8)
    assert pool_files(server["data"] / "pools" / "dask") == pool_files(tmp_path / "local")


# -- TLS and X.509 proxies ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Iterator[Any]:
    """A test CA (its directory is X509_CERT_DIR), a host certificate for localhost and
    127.0.0.1, and users' proxies (``tests/grid_certs.py``), readable by the servers."""
    import tempfile

    pytest.importorskip("cryptography", reason="the test CA needs cryptography")
    from grid_certs import make_pki

    base = Path(tempfile.mkdtemp(prefix="bgcache-pki-"))
    base.chmod(0o755)
    try:
        made = make_pki(base / "pki")
        for path in (made.cert_dir.parent, made.cert_dir):
            path.chmod(0o755)
        for path in (made.ca, made.host_cert, *made.cert_dir.iterdir()):
            path.chmod(0o644)
        yield made
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _serving(
    prefix: str, start: Callable[[Path], tuple[subprocess.Popen[bytes], int, Path]]
) -> Iterator[tuple[int, Path]]:
    """``(port, data directory)`` of a server ``start(base)`` runs in a fresh directory
    under the system's temp directory (which the xrootd user may enter), stopped and
    removed afterwards."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    try:
        proc, port, data = start(base / "server")
        try:
            yield port, data
        finally:
            proc.terminate()
            proc.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def davs(pki: Any) -> Iterator[dict[str, Any]]:
    """wsgidav over HTTPS with the test CA's host certificate, taking X.509 proxies of that
    CA's users (or a token) as a storage element does."""
    pytest.importorskip("httpx", reason="davs:// pools need httpx: pip install 'bgcache[webdav]'")
    tls = (pki.host_cert, pki.host_key, pki.cert_dir)
    with _serving("bgcache-davs-", lambda base: start_webdav(base, tls=tls)) as (port, data):
        yield {"url": f"davs://127.0.0.1:{port}", "pki": pki, "data": data}


@pytest.fixture(scope="module")
def xroot_gsi(pki: Any) -> Iterator[dict[str, Any]]:
    """xrootd taking only GSI: X.509 proxies of the test CA's users, the user's DN in its
    grid-mapfile; reached as ``localhost``, the name in its host certificate."""
    pytest.importorskip(
        "XRootD", reason="root:// pools need the XRootD client: pip install 'bgcache[xrootd]'"
    )
    if shutil.which("xrootd") is None:
        pytest.skip("no xrootd server: install it with 'apt-get install xrootd-server' (CI does)")
    gsi = (pki.cert_dir, pki.host_cert, pki.host_key, pki.user_dn)
    with _serving("bgcache-gsi-", lambda base: start_xrootd(base, gsi=gsi)) as (port, data):
        yield {"url": f"root://localhost:{port}/", "pki": pki, "data": data}


def _grid_env(monkeypatch: pytest.MonkeyPatch, **values: Path | str) -> None:
    """Only the grid credentials named (none of the caller's shell)."""
    for name in ("X509_USER_PROXY", "X509_CERT_DIR", "BEARER_TOKEN", "BEARER_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")  # no token found by discovery
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))


@pytest.mark.parametrize("kind", ["davs", "xroot_gsi"])
def test_an_x509_proxy_builds_and_reads(
    kind: str,
    request: pytest.FixtureRequest,
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy of X509_USER_PROXY (an RFC 3820 proxy, its key, the user certificate) with
    the CAs of X509_CERT_DIR, and no token: build, inspect, verify and overlay draws, on
    WebDAV over TLS (the proxy as client certificate) and on xrootd taking only GSI (the
    client finds it as xrdcp does). On WebDAV a bearer token instead of the proxy appends."""
    server = request.getfixturevalue(kind)
    pki = server["pki"]
    url = server["url"] + "/pools/x509"
    _grid_env(monkeypatch, X509_CERT_DIR=pki.cert_dir, X509_USER_PROXY=pki.proxy)
    built = cli("build", url, "-m", "synthetic", "-n", "12", "--block-events", "4", "-q")
    assert built.exit_code == 0, built.stderr
    assert cli("inspect", url).exit_code == 0
    assert verify_pool(url).ok
    assert PoolOverlay(url, seed=0).next_event() in SYNTH.events([(0, i) for i in range(12)])
    if kind == "davs":
        _grid_env(monkeypatch, X509_CERT_DIR=pki.cert_dir, BEARER_TOKEN="rw-token")
        appended = cli("build", url, "-m", "synthetic", "-n", "16", "-q")
        assert appended.exit_code == 0, appended.stderr
        assert len(open_pool(url)) == 16


def test_davs_refusals_are_one_line(
    davs: dict[str, Any], cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server certificate that no CA of X509_CERT_DIR signed, a proxy of a CA the server
    does not trust, an expired proxy, a proxy file that is missing or no proxy: each one
    line that says what to do (exit 1, or 2 for the file), and no token in it."""
    pki = davs["pki"]
    url = davs["url"] + "/pools/refused"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"X509_USER_PROXY": pki.proxy}, 1, "certificate does not verify"),
        ({"X509_USER_PROXY": pki.stranger_proxy}, 1, "refused the client certificate (unknown ca)"),
        ({"X509_USER_PROXY": pki.expired_proxy}, 1, "client certificate (certificate expired)"),
        ({"X509_USER_PROXY": pki.proxy.with_name("none.pem")}, 2, "no such file"),
        ({"X509_USER_PROXY": pki.ca}, 2, "not a certificate with its key"),
        ({"X509_CERT_DIR": pki.cert_dir, "BEARER_TOKEN": "expired-token"}, 1, "HTTP 401"),
    ]
    for env, code, needle in cases:
        if env.get("X509_USER_PROXY", pki.proxy) != pki.proxy:
            env = {"X509_CERT_DIR": pki.cert_dir, **env}
        _grid_env(monkeypatch, **env)
        result = cli("inspect", url)
        line = _one_line(result)
        assert result.exit_code == code and needle in line, (env, line)
        assert "expired-token" not in line
    assert not (davs["data"] / "pools" / "refused").exists()


def test_root_gsi_refusals_are_one_line(xroot_gsi: dict[str, Any]) -> None:
    """An expired proxy, one of a CA the server does not trust, no CA directory to check
    the server's certificate, no proxy, a proxy file that is not there: one line each.
    Each in a process of its own, as a user runs them: the XRootD client keeps a channel
    it authenticated for the rest of the process."""
    pki = xroot_gsi["pki"]
    url = xroot_gsi["url"] + "/pools/denied"
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"X509_CERT_DIR": pki.cert_dir, "X509_USER_PROXY": pki.expired_proxy},
            1,
            "credentials refused",
        ),
        (
            {"X509_CERT_DIR": pki.cert_dir, "X509_USER_PROXY": pki.stranger_proxy},
            1,
            "credentials refused",
        ),
        (
            {"X509_CERT_DIR": pki.cert_dir.parent / "none", "X509_USER_PROXY": pki.proxy},
            2,
            "is not a directory",
        ),
        ({"X509_CERT_DIR": pki.cert_dir}, 1, "credentials refused"),
        ({"X509_USER_PROXY": pki.proxy.with_name("none.pem")}, 2, "no such file"),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "BEARER_"))}
    for env, code, needle in cases:
        result = subprocess.run(
            [*PY, "inspect", url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean, **{k: str(v) for k, v in env.items()}},
        )
        line = _one_line(result)
        assert result.returncode == code and needle in line, (env, line)
        if code == 1:
            assert "X509_USER_PROXY" in line and "voms-proxy-init" in line, line
    assert not (xroot_gsi["data"] / "pools" / "denied").exists()
