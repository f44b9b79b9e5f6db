"""Start real grid storage servers on 127.0.0.1: Debian's ``xrootd`` and wsgidav.

Used by ``tests/test_grid.py`` and ``benchmarks/grid.py`` (no pytest here). Each returns
``(process, port, data directory)``; the caller terminates the process.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_xrootd(
    base: Path, *, read_only: bool = False
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """An xrootd server exporting ``base/data``; as root it runs as the ``xrootd`` user
    (it refuses to run as root), elsewhere as the user running the tests."""
    data, admin = base / "data", base / "admin"
    data.mkdir(parents=True)
    admin.mkdir()
    base.chmod(0o755)
    port = free_port()
    config = base / "xrootd.cfg"
    config.write_text(
        f"all.export / {'r/o' if read_only else ''}\n"
        f"oss.localroot {data}\n"
        f"xrd.port {port}\n"
        "xrd.network nodnr\n"
        f"all.adminpath {admin}\n"
        f"all.pidpath {admin}\n"
    )
    argv = ["xrootd", "-c", str(config), "-l", str(base / "xrootd.log")]
    if os.geteuid() == 0:
        user = pwd.getpwnam("xrootd")
        for path in (base, data, admin):
            os.chown(path, user.pw_uid, user.pw_gid)
        argv += ["-R", "xrootd"]
    with (base / "xrootd.out").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    if _listening(proc, port):
        return proc, port, data
    proc.kill()
    log = base / "xrootd.log"
    said = (base / "xrootd.out").read_text()[-1000:] + (
        log.read_text()[-1000:] if log.exists() else ""
    )
    raise RuntimeError(f"xrootd did not start: {said}")


def _listening(proc: subprocess.Popen[bytes], port: int, seconds: float = 30) -> bool:
    """Whether the server ``proc`` accepts connections on ``port`` within ``seconds``
    (False as soon as it exits)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            if proc.poll() is not None:
                return False
            time.sleep(0.1)
    return False


def start_webdav(
    base: Path, *, anonymous: bool = False
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """wsgidav serving ``base/dav``, behind the bearer-token check of
    ``tests/webdav_server.py`` unless ``anonymous``."""
    data = base / "dav"
    data.mkdir(parents=True)
    port = free_port()
    script = Path(__file__).with_name("webdav_server.py")
    argv = [sys.executable, str(script), str(data), str(port)] + (
        ["--anonymous"] if anonymous else []
    )
    with (base / "webdav.out").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    if _listening(proc, port):
        return proc, port, data
    proc.kill()
    raise RuntimeError(f"wsgidav did not start: {(base / 'webdav.out').read_text()[-2000:]}")
