"""Pools on WebDAV storage (``davs://host/path``, ``https://host/path``), on httpx.

The second grid backend of :mod:`bgcache.store.storage` (storage elements serve WebDAV
beside XRootD: dCache, StoRM, EOS, XRootD's own HTTP); see :mod:`bgcache.store.remote` for
how writes stay crash-safe and how several writers create one pool. ``davs://`` and
``https://`` are the same server over TLS, ``dav://`` and ``http://`` without (a test
server). The requests are bgcache's own (:mod:`bgcache.store.davclient`, on httpx: ``pip
install 'bgcache[webdav]'``), which read every answer under the limits of
:mod:`bgcache.store.remote_limits` (caps, a deadline per request, bounded listings,
redirects); this module says what a pool needs of them.

Authentication follows the WLCG conventions: a bearer token from ``$BEARER_TOKEN``, else the
file ``$BEARER_TOKEN_FILE``, else ``$XDG_RUNTIME_DIR/bt_u<uid>``, else ``/tmp/bt_u<uid>``
(the WLCG bearer token discovery), sent as ``Authorization: Bearer`` (to which hosts after a
redirect: see :mod:`~bgcache.store.davclient`); an X.509 proxy from ``$X509_USER_PROXY`` as
the client certificate, with the CA directory ``$X509_CERT_DIR`` where set. Neither is
logged or put into an error message.

Every request has the deadline :func:`~bgcache.store.remote_limits.remote_timeout`
(``$BGCACHE_REMOTE_TIMEOUT``, 60 s); one that changes nothing (a stat, a listing, a read)
is tried again after a server error for up to :data:`RETRY_WAIT` seconds. The client is
made anew in a forked child.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import weakref
from pathlib import Path
from typing import Any

from bgcache.errors import PoolWriteError, StorageServerError, UsageError
from bgcache.store.davclient import DavClient
from bgcache.store.davlisting import is_html
from bgcache.store.format import STREAMS_DOCUMENT, ZARR_JSON
from bgcache.store.remote import Entry, RemoteStorage, TransientServerError, x509_files
from bgcache.store.remote_limits import content_range, more_than_asked, remote_timeout, too_big

#: Clients a forked child inherited from its parent (see ``WebDAVStorage._client``).
_INHERITED: list[Any] = []

#: Seconds a read (a ``GET``, a stat or a listing) that meets server errors is tried for.
RETRY_WAIT = 10.0
#: Seconds a read of the root record waits for a replacement of it under way to end.
REPLACE_WAIT = 10.0

#: URL schemes of WebDAV pools and the HTTP scheme each stands for.
SCHEMES = {"davs": "https", "https": "https", "dav": "http", "http": "http"}


def bearer_token() -> str | None:
    """The WLCG bearer token of this process, found as the WLCG discovery defines, or None."""
    token = os.environ.get("BEARER_TOKEN", "").strip()
    if token:
        return token
    candidates = [os.environ.get("BEARER_TOKEN_FILE", "")]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(f"{os.environ['XDG_RUNTIME_DIR']}/bt_u{uid}")
    candidates.append(f"/tmp/bt_u{uid}")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            text = Path(candidate).read_text(errors="replace").strip()
            if text:
                return text
    return None


def parse_url(url: str) -> tuple[str, str]:
    """``(base URL of the server, path of the pool)`` of a WebDAV pool URL.

    Example:
        >>> parse_url("davs://se.example.org:2880/belle/pools/convnet")
        ('https://se.example.org:2880', '/belle/pools/convnet')
    """
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    if scheme not in SCHEMES or not host:
        raise UsageError(f"pool URL {url!r}: expected davs://host[:port]/path/to/pool")
    path = "/" + path.strip("/")
    if path == "/":
        raise UsageError(f"pool URL {url!r} names no path: expected davs://host/path/to/pool")
    return f"{SCHEMES[scheme]}://{host}", path


class WebDAVStorage(RemoteStorage):
    """A pool at ``davs://host[:port]/path`` (or ``https://``; ``dav://``, ``http://``).

    Raises:
        UsageError: a malformed URL, or a bad ``$BGCACHE_REMOTE_TIMEOUT``.
        MissingDependencyError: no httpx.
    """

    def __init__(self, url: str) -> None:
        from bgcache.store.davclient import _httpx

        self.base, self.path = parse_url(url)
        scheme = url.partition("://")[0]
        self._url = f"{scheme}://{self.base.partition('://')[2]}{self.path}"
        _httpx()  # said now, not at the first request
        self._timeout = remote_timeout()
        self._pid = -1
        self._dav: DavClient | None = None

    # -- the client, per process -----------------------------------------------------------
    def _client(self) -> DavClient:
        if self._dav is None or self._pid != os.getpid():
            # new, or a forked child: no connection of the parent's
            verify = self._tls_context() if self.base.startswith("https://") else True
            if self._dav is not None:
                # the parent's client, in a forked child: never closed here (that could end
                # the parent's TLS session on the shared socket), kept from the collector
                _INHERITED.append(self._dav)
            dav = DavClient(self.base, self.path, self.url, self._timeout, verify, bearer_token())
            self._dav = dav
            self._pid = os.getpid()
            weakref.finalize(self, dav.close)  # its connections close with the storage
        return self._dav

    def _tls_context(self) -> ssl.SSLContext:
        """TLS as grid clients use it: the CAs of ``$X509_CERT_DIR`` (else the system's),
        the X.509 proxy ``$X509_USER_PROXY`` as the client certificate where set.

        Raises:
            UsageError: a proxy file that cannot be read or is no certificate and key, a CA
                directory that is none.
        """
        proxy, cert_dir = x509_files(self.url)
        context = ssl.create_default_context(capath=cert_dir)
        if proxy:
            try:
                context.load_cert_chain(proxy)
            except ssl.SSLError:
                raise UsageError(
                    f"X509_USER_PROXY '{proxy}' for pool '{self.url}': not a certificate "
                    "with its key (PEM); make a proxy (voms-proxy-init) or unset "
                    "X509_USER_PROXY to use a bearer token"
                ) from None
        return context

    # -- primitives ------------------------------------------------------------------------
    def _again(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, a request that changes nothing, tried again after a
        server error, with a growing pause, for at most :data:`RETRY_WAIT` seconds.

        A ``PROPFIND`` is no snapshot of a directory: wsgidav lists the names, then stats
        each, and answers 500 when one of them was renamed or removed meanwhile (a
        concurrent writer's partial file or claim; measured beside two writers that create
        documents in the directory: one listing in five failed, and one needed five tries),
        and a ``GET`` overlapping a rename can fail the same way. A deadline rather than a
        count of tries, since how often the next try fails depends on how busy the writers
        are; a server that keeps failing is reported after it. An answer that missed its
        own deadline, or is not what was asked, is not tried again.
        """
        deadline = time.monotonic() + RETRY_WAIT
        pause = 0.02
        while True:
            try:
                return fn(*args, **kwargs)
            except TransientServerError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.5)

    def _stat(self, key: str) -> Entry | None:
        found = self._again(self._client().propfind, key, "0", "read")
        if found is None:
            return None
        me: Entry = found[0]
        return Entry(key.rsplit("/", 1)[-1], me.kind, me.size, me.mtime)

    def _list(self, key: str) -> list[Entry]:
        found = self._again(self._client().propfind, key, "1", "list")
        if found is None or found[0].kind != "dir":
            return []
        entries: list[Entry] = found[1]
        return entries

    def _get(self, key: str, offset: int, length: int | None, *, cap: int | None = None) -> bytes:
        """Bytes of ``key`` (a range of a block column, or with ``cap`` a whole object:
        :meth:`_get_once`, tried again after a server error)."""
        if length is not None and length <= 0:
            return b""
        data: bytes = self._again(self._get_once, key, offset, length, cap=cap)
        return data

    def _get_once(
        self,
        key: str,
        offset: int,
        length: int | None,
        *,
        close: bool = False,
        cap: int | None = None,
    ) -> bytes:
        """Bytes of ``key`` by one GET of ``length`` bytes from ``offset`` (None: to the
        end), at most ``length`` of them held; ``close`` asks the server to close the
        connection after it, so a body shorter than its ``Content-Length`` is an error at
        once. ``cap`` (a whole object's read, from 0): the most its kind may hold.

        A server may ignore the range and send the whole object (HTTP 200): taken where it
        is no longer than the range's end (or ``cap``), else refused as soon as it passes it.

        Raises:
            FileNotFoundError: there is no such object. PoolObjectError: it holds more than
                ``cap``. StorageServerError: the server sent more than asked, another range,
                an HTML page or an encoded body. PoolWriteError: an error status.
        """
        dav = self._client()
        headers = {"Connection": "close"} if close else {}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + max(length, 1) - 1}"
        elif offset:
            headers["Range"] = f"bytes={offset}-"
        with dav.exchange("GET", key, "read", headers=headers) as r:
            status = r.status_code
            if status >= 400:
                dav.drain(r)
                if status == 404:
                    raise FileNotFoundError(f"{self.url}/{key}")
                if status == 416:  # a range past the end (an empty file)
                    return b""
                raise dav.status_error(r, key, "read")
            if status not in (200, 206):
                raise dav.status_error(r, key, "read")
            if is_html(r):
                raise dav.html_error(r, key, "read", "the file asked for")
            declared = _int_header(r.headers.get("content-length"))
            if status == 206:
                first, total = content_range(r.headers.get("content-range", ""))
                if first != offset:
                    raise StorageServerError(
                        f"cannot read pool '{self.url}' ({key}): the server sent another "
                        f"range than the one asked (from byte {offset}): a misbehaving server"
                    )
                if cap is not None and total is not None and total > cap:
                    raise too_big(self.url, key, total, cap)
                limit = length
                asked = length

                def over() -> Exception:
                    return more_than_asked(self.url, key, asked or 0, whole=False)
            elif cap is not None:  # the whole object, read whole
                limit = cap
                if declared is not None and declared > cap:
                    raise too_big(self.url, key, declared, cap)

                def over() -> Exception:
                    return too_big(self.url, key, None, cap or 0)
            else:  # the whole object, where a range was asked: taken up to the range's end
                limit = None if length is None else offset + length
                asked = length

                def over() -> Exception:
                    return more_than_asked(self.url, key, asked or 0, whole=True)

            if limit is not None and declared is not None and declared > limit:
                raise over()
            data = dav.body(r, limit, over, key)
            if data[:1] == b"<" and is_html(r, data):
                raise dav.html_error(r, key, "read", "the file asked for")
        if status == 200 and offset:
            data = data[offset:]
        return data if length is None else data[:length]

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes of ``key`` (one ranged GET of ``max_bytes + 1``), or None if missing.

        A server error (5xx) or an answer cut short is tried again (:meth:`_again`); the
        root record is read by :meth:`_read_root_record`.

        Raises:
            PoolObjectError: it holds more than ``max_bytes`` (refused as soon as the server
                says so, or its answer passes them).
        """
        length = None if max_bytes is None else max_bytes + 1
        root = key == ZARR_JSON
        data = (
            self._read_root_record(length, max_bytes)
            if root
            else self._read_file(key, length, max_bytes)
        )
        if data is not None and max_bytes is not None and len(data) > max_bytes:
            raise too_big(self.url, key, None, max_bytes)
        return data

    def _read_file(self, key: str, length: int | None, cap: int | None) -> bytes | None:
        try:
            data = self._get(key, 0, length, cap=cap)
        except FileNotFoundError:
            return None
        return data

    def _read_root_record(self, length: int | None, cap: int | None) -> bytes | None:
        """One whole version of the root record, the one document writers replace.

        A ``MOVE`` over an existing document is not atomic on every server (RFC 4918 lets
        it delete the target first; wsgidav and Apache's mod_dav do), and a server may take
        a file's length from one version and its bytes from the next. A ``GET`` that
        overlaps a replacement can therefore find nothing (404), fail (5xx), send fewer
        bytes than its ``Content-Length`` (then waits: the request asks the server to close
        the connection after the answer, so the cut is seen at once instead of after the
        timeout), or send the new version cut at the old one's length. Each version is a
        whole file renamed into place, never written in place, so a complete JSON document
        is one whole version (a strict prefix of a JSON object is never one), and the other
        answers are told apart:

        * 404: the streams group (``streams/zarr.json``) is created after the root record
          and before any writer replaces it, and is never replaced; where it exists the
          root record does too and is being replaced, so the read waits for it, else the
          pool has no root record (yet);
        * a document that is not whole JSON is damage once two reads give the same bytes
          (two torn reads are cut from different versions), else it was torn;
        * a server error or a cut answer is tried again.

        The waits end after :data:`REPLACE_WAIT` seconds with the last answer: a root
        record someone removed, a server that keeps failing. A missing or damaged record
        costs one request more, a torn read is never taken for either.

        Raises:
            TransientServerError: the server keeps failing.
        """
        deadline = time.monotonic() + REPLACE_WAIT
        pause = 0.02
        previous: bytes | None = None
        while True:
            outcome: bytes | TransientServerError | None
            try:
                outcome = self._get_once(ZARR_JSON, 0, length, close=True, cap=cap)
            except FileNotFoundError:
                outcome = None
            except TransientServerError as exc:
                outcome = exc
            if isinstance(outcome, bytes):
                if _whole_json(outcome) or outcome == previous or time.monotonic() > deadline:
                    return outcome  # a whole version, or the same damage twice
                previous = outcome
                continue  # torn, or damaged: read once more
            if outcome is None and not self._pool_exists():
                return None
            if time.monotonic() > deadline:
                if outcome is None:
                    return None
                raise outcome
            time.sleep(pause)
            pause = min(2 * pause, 0.5)

    def _pool_exists(self) -> bool:
        """Whether the streams group exists (a server error counts as yes: look again)."""
        try:
            return self._stat(STREAMS_DOCUMENT) is not None
        except TransientServerError:
            return True

    def _put(self, key: str, data: bytes) -> None:
        dav = self._client()
        with dav.exchange("PUT", key, "write to", content=data) as r:
            dav.drain(r)
            if not 200 <= r.status_code < 300:
                raise dav.status_error(r, key, "write to")

    def _move(self, source: str, target: str) -> None:
        dav = self._client()
        headers = {"Destination": str(dav.address(target)), "Overwrite": "T"}
        with dav.exchange("MOVE", source, "write to", headers=headers) as r:
            dav.drain(r)
            if not 200 <= r.status_code < 300 or r.status_code == 207:
                raise dav.status_error(r, target, "write to")

    def _mkdir(self, key: str, *, parents: bool) -> bool:
        dav = self._client()
        full = f"{self.path}/{key}" if key else self.path
        parts = [p for p in full.split("/") if p]
        targets = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))] if parents else [full]
        created = False
        for target in targets:
            url = dav.base.copy_with(path=target + "/")
            with dav.exchange("MKCOL", key, "write to", target=url) as r:
                dav.drain(r)
                status = r.status_code
            if status in (200, 201):
                created = True
                continue
            if status == 405:  # it exists
                created = False
                continue
            # two MKCOLs of one name at once: a server that checks before it creates
            # (wsgidav) may answer the second with an error instead of 405; the directory
            # exists, made by the other writer, and this call did not make it (and a server
            # may refuse a MKCOL of an existing directory the user may not write, 403)
            if self._stat_full(url):
                created = False
                continue
            raise dav.status_error(r, key, "write to")
        return created

    def _stat_full(self, url: Any) -> bool:
        try:
            found = self._again(self._client().propfind, "", "0", "read", url)
        except (PoolWriteError, StorageServerError):
            return False
        return found is not None

    def _remove(self, key: str) -> None:
        dav = self._client()
        with dav.exchange("DELETE", key, "delete from") as r:
            dav.drain(r)
            if r.status_code != 404 and (not 200 <= r.status_code < 300 or r.status_code == 207):
                raise dav.status_error(r, key, "delete from")

    def _rmdir(self, key: str) -> None:
        self._remove(key)


def _whole_json(data: bytes) -> bool:
    """Whether ``data`` is one complete JSON document (a root record read whole).

    Example:
        >>> _whole_json(b'{"streams": [1, 2]}'), _whole_json(b'{"streams": [1, 2')
        (True, False)
    """
    try:
        json.loads(data)
    except ValueError:  # UnicodeDecodeError included: a cut inside a character
        return False
    return True


def _int_header(text: str | None) -> int | None:
    """A ``Content-Length``'s number (None where missing or no number)."""
    return int(text) if text and text.strip().isdigit() else None


__all__ = ["RETRY_WAIT", "SCHEMES", "WebDAVStorage", "bearer_token", "parse_url"]
