"""Start real grid storage servers on 127.0.0.1: Debian's ``xrootd`` and wsgidav.

Used by ``tests/test_grid.py`` and ``benchmarks/grid.py`` (no pytest here). Each returns
``(process, port, data directory)``; the caller terminates the process.
"""

from __future__ import annotations

import os
import pwd
import shutil
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
    base: Path, *, read_only: bool = False, gsi: tuple[Path, Path, Path, str] | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """An xrootd server exporting ``base/data``; as root it runs as the ``xrootd`` user
    (it refuses to run as root), elsewhere as the user running the tests.

    ``gsi`` = (CA directory, host certificate, host key, a user's DN): the server takes
    only GSI authentication (X.509 proxies of that CA's users), and maps that DN in its
    grid-mapfile, as a storage element does.
    """
    data, admin = base / "data", base / "admin"
    data.mkdir(parents=True)
    admin.mkdir()
    base.chmod(0o755)
    port = free_port()
    config = base / "xrootd.cfg"
    owned = [base, data, admin]
    security = ""
    if gsi:
        cert_dir, host_cert, host_key, user_dn = gsi
        grid = base / "grid-security"
        grid.mkdir()
        shutil.copy(host_cert, grid / "hostcert.pem")
        shutil.copy(host_key, grid / "hostkey.pem")
        (grid / "hostkey.pem").chmod(0o400)  # gsi refuses a key others may read
        (grid / "grid-mapfile").write_text(f'"{user_dn}" bgcache\n')
        owned += [grid, grid / "hostcert.pem", grid / "hostkey.pem", grid / "grid-mapfile"]
        security = (
            "xrootd.seclib libXrdSec.so\n"
            f"sec.protocol gsi -certdir:{cert_dir} -cert:{grid / 'hostcert.pem'} "
            f"-key:{grid / 'hostkey.pem'} -gridmap:{grid / 'grid-mapfile'} -crl:0 -dlgpxy:0\n"
            "sec.protbind * only gsi\n"
        )
    config.write_text(
        f"all.export / {'r/o' if read_only else ''}\n"
        f"oss.localroot {data}\n"
        f"xrd.port {port}\n"
        "xrd.network nodnr\n"
        f"all.adminpath {admin}\n"
        f"all.pidpath {admin}\n" + security
    )
    argv = ["xrootd", "-c", str(config), "-l", str(base / "xrootd.log")]
    if os.geteuid() == 0:
        user = pwd.getpwnam("xrootd")
        for path in owned:
            os.chown(path, user.pw_uid, user.pw_gid)
        argv += ["-R", "xrootd"]
    with (base / "xrootd.out").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    log = base / "xrootd.log"
    if _listening(proc, port) and _initialized(proc, log):
        return proc, port, data
    proc.kill()
    said = (base / "xrootd.out").read_text()[-1000:] + (
        log.read_text()[-1000:] if log.exists() else ""
    )
    raise RuntimeError(f"xrootd did not start: {said}")


def _initialized(proc: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> bool:
    """Whether xrootd says in ``log`` that it initialized (it listens before it loads its
    protocols, and a security setup it cannot load ends it after that)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "initialization completed" in text:
            return True
        if "initialization failed" in text:
            return False
        time.sleep(0.1)
    return False


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
    base: Path, *, anonymous: bool = False, tls: tuple[Path, Path, Path] | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """wsgidav serving ``base/dav``, behind the bearer-token check of
    ``tests/webdav_server.py`` unless ``anonymous``; over HTTPS with ``tls`` (host
    certificate, its key, the CA directory that client certificates are verified with)."""
    data = base / "dav"
    data.mkdir(parents=True)
    port = free_port()
    script = Path(__file__).with_name("webdav_server.py")
    argv = [sys.executable, str(script), str(data), str(port)] + (
        ["--anonymous"] if anonymous else []
    )
    if tls:
        argv += ["--tls", *map(str, tls)]
    with (base / "webdav.out").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    if _listening(proc, port):
        return proc, port, data
    proc.kill()
    raise RuntimeError(f"wsgidav did not start: {(base / 'webdav.out').read_text()[-2000:]}")
