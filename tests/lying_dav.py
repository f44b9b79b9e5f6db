"""A small WebDAV server that lies, for ``tests/test_dav_lies.py`` (test-only).

It serves a real pool directory at ``http://127.0.0.1:PORT/pool`` as a WebDAV server does
for reading (``GET`` with ``Range``, ``PROPFIND`` of depth 0 and 1, ``207 Multi-Status``
answers with ``href``, ``resourcetype``, ``getcontentlength`` and ``getlastmodified``), and
misbehaves in the one way its ``mode`` names (see :data:`MODES`); mode ``honest`` does not,
so that a test can show the server serves the pool well enough for ``bgcache`` to read it.
A real server (wsgidav, xrootd) cannot be made to lie like this, hence this one.

It runs in threads of the test's process. Every request is recorded as ``(method, path,
whether it carried an Authorization header)``; :meth:`LyingDAV.outside` lists those for a
path outside ``/pool`` after percent-decoding and resolving ``.`` and ``..``.
"""

from __future__ import annotations

import email.utils
import http.server
import os
import posixpath
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

#: What each mode does (GET misbehaviours hit the objects named in brackets).
MODES = {
    "honest": "no misbehaviour",
    "endless-no-length": "GET zarr.json: 200, no Content-Length, an endless body",
    "endless-chunked": "every GET: 200, chunked, endless",
    "length-1e12": "GET zarr.json: 200, Content-Length 10**12, an endless body",
    "range-ignored-4gib": "every GET: Range ignored, 200 with Content-Length 4 GiB, endless",
    "range-ignored": "every GET: Range ignored, 200 with the whole object",
    "length-longer-open": "GET zarr.json: Content-Length 1000 more than sent, kept open",
    "drip-zarr-json": "GET zarr.json: 1 byte a second",
    "drip-counts": "GET of a counts chunk: 1 byte a second",
    "propfind-endless": "every PROPFIND: 207, a multistatus that never ends",
    "propfind-300000": "PROPFIND of the pool: 300,000 entries",
    "propfind-html": "every PROPFIND: 200 with an HTML page",
    "propfind-200-text": "every PROPFIND: 200 with text, no multistatus",
    "propfind-not-xml": "every PROPFIND: 207 whose body is not XML",
    "propfind-entity-bomb": "every PROPFIND: 207 with an XML entity bomb (billion laughs)",
    "href-dotdot": "listing of the pool: an href /pool/../../../etc/",
    "href-encoded": "listing of the pool: an href /pool/%2e%2e%2f%2e%2e%2fetc/",
    "href-elsewhere": "listing of the pool: an href http://elsewhere.example.org/pool/streams/",
    "redirect-loop": "every GET: 302 to itself",
    "redirect-https": "every GET: 302 to the same path over https",
    "redirect-outside": "every GET: 302 to /etc/passwd on the same server",
    "login-page": "every GET: 200 with an HTML login page",
    "redirect-node": "every GET: 307 to the node server (another origin) that serves it",
}

_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form action='/login'>"
    b"<input name='user'><input name='password' type='password'></form></body></html>\n"
)


class LyingDAV:
    """The server of one mode, started on a free port of 127.0.0.1 (:meth:`stop` ends it).

    Args:
        pool: the pool directory served at ``/pool``.
        mode: a key of :data:`MODES`.
        node: for ``redirect-node``: the base URL (``http://host:port``) GETs go to.
    """

    def __init__(self, pool: Path, mode: str, node: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.pool, self.mode, self.node = pool, mode, node
        self.requests: list[tuple[str, str, bool]] = []
        self.stopping = threading.Event()
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The pool's URL (``dav://``)."""
        return f"dav://127.0.0.1:{self.port}/pool"

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def outside(self) -> list[str]:
        """The paths asked for that lie outside ``/pool``."""
        return [path for _, path, _ in self.requests if not _inside(path)]

    def writes(self) -> list[str]:
        """The requests that would change something."""
        return [f"{m} {p}" for m, p, _ in self.requests if m not in ("GET", "HEAD", "PROPFIND")]


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that stopped reading an endless answer: what the rows expect


def _inside(path: str) -> bool:
    plain = posixpath.normpath(urllib.parse.unquote(path.split("?", 1)[0]))
    return plain == "/pool" or plain.startswith("/pool/")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: LyingDAV

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- the pool as an honest server serves it ----------------------------------------------
    def _file(self) -> Path | None:
        """The pool file or directory the request's path names, or None."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if not _inside(path):
            return None
        rel = posixpath.normpath(path)[len("/pool") :].strip("/")
        target = self.server_owner.pool / rel if rel else self.server_owner.pool
        return target if target.exists() else None

    def _record(self) -> LyingDAV:
        owner = self.server_owner
        owner.requests.append((self.command, self.path, "Authorization" in self.headers))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        return owner

    def _send(
        self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _honest_get(self, target: Path) -> None:
        data = target.read_bytes()
        kind = "application/json" if target.name.endswith(".json") else "application/octet-stream"
        wanted = self.headers.get("Range", "")
        if not wanted.startswith("bytes="):
            self._send(200, data, kind)
            return
        first_text, _, last_text = wanted[len("bytes=") :].partition("-")
        if not first_text:  # the last N bytes
            first, last = max(len(data) - int(last_text), 0), len(data) - 1
        else:
            first = int(first_text)
            last = min(int(last_text), len(data) - 1) if last_text else len(data) - 1
        if first >= len(data):
            self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
            return
        extra = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
        self._send(206, data[first : last + 1], kind, extra)

    def _entry(self, path: Path, href: str) -> bytes:
        info = path.stat()
        modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        if path.is_dir():
            props = "<D:resourcetype><D:collection/></D:resourcetype>"
        else:
            props = f"<D:resourcetype/><D:getcontentlength>{info.st_size}</D:getcontentlength>"
        return (
            f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{props}"
            f"<D:getlastmodified>{modified}</D:getlastmodified></D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        ).encode()

    def _listing(self, target: Path, extra: list[bytes]) -> bytes:
        rel = target.relative_to(self.server_owner.pool).as_posix()
        base = "/pool" + ("" if rel == "." else "/" + rel)
        parts = [self._entry(target, urllib.parse.quote(base) + ("/" if target.is_dir() else ""))]
        if target.is_dir() and self.headers.get("Depth", "1") != "0":
            for child in sorted(target.iterdir()):
                href = urllib.parse.quote(f"{base}/{child.name}") + ("/" if child.is_dir() else "")
                parts.append(self._entry(child, href))
            parts += extra
        return _MULTISTATUS_OPEN + b"".join(parts) + _MULTISTATUS_CLOSE

    # -- requests ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        owner = self._record()
        target = self._file()
        name = urllib.parse.unquote(self.path.split("?", 1)[0])
        root_record = name == "/pool/zarr.json"
        counts = name.endswith("/counts/c/0")
        lie = getattr(self, "_get_" + owner.mode.replace("-", "_"), None)
        if lie is not None and lie(target, root_record, counts):
            return
        if target is None or target.is_dir():
            self._send(404, b"not found", "text/plain")
            return
        self._honest_get(target)

    def do_PROPFIND(self) -> None:
        owner = self._record()
        target = self._file()
        lie = getattr(self, "_propfind_" + owner.mode.replace("-", "_"), None)
        if lie is not None and lie(target):
            return
        if target is None:
            self._send(404, b"not found", "text/plain")
            return
        self._send(207, self._listing(target, []), "application/xml; charset=utf-8")

    def do_PUT(self) -> None:
        self._refuse()

    def do_MOVE(self) -> None:
        self._refuse()

    def do_MKCOL(self) -> None:
        self._refuse()

    def do_DELETE(self) -> None:
        self._refuse()

    def _refuse(self) -> None:
        self._record()
        self._send(403, b"read-only", "text/plain")

    # -- the lies: GET (True: answered) -------------------------------------------------------
    def _endless(self, head: bytes = b"", chunked: bool = False, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        block = b"x" * (1 << 16)
        piece = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
        try:
            if head:
                self.wfile.write(
                    f"{len(head):x}\r\n".encode() + head + b"\r\n" if chunked else head
                )
            while not self.server_owner.stopping.is_set():
                self.wfile.write(piece)
        except OSError:
            pass  # the client stopped reading

    def _get_endless_no_length(self, target: Path | None, root: bool, counts: bool) -> bool:
        if root:
            self._endless(b'{"zarr_format": 3, "pad": "')
        return root

    def _get_endless_chunked(self, target: Path | None, root: bool, counts: bool) -> bool:
        self._endless(chunked=True)
        return True

    def _get_length_1e12(self, target: Path | None, root: bool, counts: bool) -> bool:
        if root:
            self._endless(length=10**12)
        return root

    def _get_range_ignored_4gib(self, target: Path | None, root: bool, counts: bool) -> bool:
        head = target.read_bytes() if target is not None and target.is_file() else b""
        self._endless(head, length=4 * 2**30)
        return True

    def _get_range_ignored(self, target: Path | None, root: bool, counts: bool) -> bool:
        if target is None or not target.is_file():
            return False
        data = target.read_bytes()
        self._send(200, data, "application/octet-stream")
        return True

    def _get_length_longer_open(self, target: Path | None, root: bool, counts: bool) -> bool:
        if not root or target is None:
            return False
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) + 1000))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.server_owner.stopping.wait(120)  # the connection stays open, silent
        self.close_connection = True
        return True

    def _drip(self, target: Path) -> None:
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.close_connection = True
        try:
            for i in range(len(data)):
                if self.server_owner.stopping.wait(1.0):
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass

    def _get_drip_zarr_json(self, target: Path | None, root: bool, counts: bool) -> bool:
        if root and target is not None:
            self._drip(target)
        return root

    def _get_drip_counts(self, target: Path | None, root: bool, counts: bool) -> bool:
        if counts and target is not None:
            self._drip(target)
        return counts

    def _redirect(self, status: int, location: str) -> None:
        self._send(status, b"moved", "text/plain", {"Location": location})

    def _get_redirect_loop(self, target: Path | None, root: bool, counts: bool) -> bool:
        self._redirect(302, self.path)
        return True

    def _get_redirect_https(self, target: Path | None, root: bool, counts: bool) -> bool:
        self._redirect(302, f"https://127.0.0.1:{self.server_owner.port}{self.path}")
        return True

    def _get_redirect_outside(self, target: Path | None, root: bool, counts: bool) -> bool:
        self._redirect(302, "/etc/passwd")
        return True

    def _get_redirect_node(self, target: Path | None, root: bool, counts: bool) -> bool:
        self._redirect(307, f"{self.server_owner.node}{self.path}")
        return True

    def _get_login_page(self, target: Path | None, root: bool, counts: bool) -> bool:
        self._send(200, _HTML, "text/html; charset=utf-8")
        return True

    # -- the lies: PROPFIND --------------------------------------------------------------------
    def _pool_listing(self, target: Path | None, href: str) -> bool:
        if target != self.server_owner.pool or self.headers.get("Depth") == "0":
            return False
        extra = self._entry(self.server_owner.pool / "streams", href)
        body = self._listing(target, [extra])
        self._send(207, body, "application/xml; charset=utf-8")
        return True

    def _propfind_href_dotdot(self, target: Path | None) -> bool:
        return self._pool_listing(target, "/pool/../../../etc/")

    def _propfind_href_encoded(self, target: Path | None) -> bool:
        return self._pool_listing(target, "/pool/%2e%2e%2f%2e%2e%2fetc/")

    def _propfind_href_elsewhere(self, target: Path | None) -> bool:
        return self._pool_listing(target, "http://elsewhere.example.org/pool/streams/")

    def _propfind_propfind_html(self, target: Path | None) -> bool:
        self._send(200, _HTML, "text/html; charset=utf-8")
        return True

    def _propfind_propfind_200_text(self, target: Path | None) -> bool:
        self._send(200, b"OK\n", "text/plain")
        return True

    def _propfind_propfind_not_xml(self, target: Path | None) -> bool:
        self._send(207, b"this is not XML {]", "application/xml")
        return True

    def _propfind_propfind_entity_bomb(self, target: Path | None) -> bool:
        lines = ['<!ENTITY e0 "lol">'] + [
            f'<!ENTITY e{i} "{("&e" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
        ]
        body = (
            '<?xml version="1.0"?>\n<!DOCTYPE m [' + "".join(lines) + "]>\n"
            '<D:multistatus xmlns:D="DAV:"><D:response><D:href>/pool/&e9;</D:href>'
            "</D:response></D:multistatus>"
        ).encode()
        self._send(207, body, "application/xml")
        return True

    def _stream(self, head: bytes, pieces: Any) -> None:
        self.send_response(207)
        self.send_header("Content-Type", "application/xml; charset=utf-8")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(head)
            for piece in pieces:
                if self.server_owner.stopping.is_set():
                    return
                self.wfile.write(piece)
        except OSError:
            pass

    def _propfind_propfind_endless(self, target: Path | None) -> bool:
        block = b" " * (1 << 20)
        self._stream(_MULTISTATUS_OPEN, iter(lambda: block, None))
        return True

    def _propfind_propfind_300000(self, target: Path | None) -> bool:
        if target != self.server_owner.pool or self.headers.get("Depth") == "0":
            return False
        stamp = email.utils.formatdate(time.time(), usegmt=True)

        def batches() -> Any:
            yield self._entry(target, "/pool/")
            for start in range(0, 300_000, 1000):
                yield b"".join(
                    (
                        f"<D:response><D:href>/pool/entry{i:06d}</D:href><D:propstat><D:prop>"
                        "<D:resourcetype/><D:getcontentlength>1</D:getcontentlength>"
                        f"<D:getlastmodified>{stamp}</D:getlastmodified></D:prop>"
                        "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
                    ).encode()
                    for i in range(start, start + 1000)
                )
            yield _MULTISTATUS_CLOSE

        self._stream(_MULTISTATUS_OPEN, batches())
        return True


_MULTISTATUS_OPEN = b'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
_MULTISTATUS_CLOSE = b"</D:multistatus>\n"

__all__ = ["MODES", "LyingDAV"]

if __name__ == "__main__":  # serve a pool by hand: python tests/lying_dav.py POOL MODE
    import sys

    server = LyingDAV(Path(sys.argv[1]), sys.argv[2])
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    os._exit(0)
