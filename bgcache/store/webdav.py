"""Pools on WebDAV storage (``davs://host/path``, ``https://host/path``), with webdav4.

The second grid backend of :mod:`bgcache.store.storage` (storage elements serve WebDAV
beside XRootD: dCache, StoRM, EOS, XRootD's own HTTP); see :mod:`bgcache.store.remote` for
how writes stay crash-safe and how several writers create one pool. ``davs://`` and
``https://`` are the same server over TLS, ``dav://`` and ``http://`` without (a test
server). webdav4 (``pip install 'bgcache[webdav]'``) parses the ``PROPFIND`` answers; the
reads are plain ``GET`` requests with a ``Range`` on its httpx client.

Authentication follows the WLCG conventions: a bearer token from ``$BEARER_TOKEN``, else the
file ``$BEARER_TOKEN_FILE``, else ``$XDG_RUNTIME_DIR/bt_u<uid>``, else ``/tmp/bt_u<uid>``
(the WLCG bearer token discovery), sent as ``Authorization: Bearer``; an X.509 proxy from
``$X509_USER_PROXY`` as the client certificate, with the CA directory ``$X509_CERT_DIR``
where set. Neither is logged or put into an error message.

Every request has the timeout :func:`~bgcache.store.remote.remote_timeout`
(``$BGCACHE_REMOTE_TIMEOUT``, 60 s); one that changes nothing (a stat, a listing, a read)
is tried again after a server error for up to :data:`RETRY_WAIT` seconds. The client is
made anew in a forked child.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
import weakref
from pathlib import Path
from typing import Any

from bgcache.errors import MissingDependencyError, PoolWriteError, UsageError
from bgcache.store.format import STREAMS_DOCUMENT, ZARR_JSON
from bgcache.store.remote import (
    Entry,
    RemoteStorage,
    TransientServerError,
    remote_timeout,
    x509_files,
)

#: Clients a forked child inherited from its parent (see ``WebDAVStorage._client``).
_INHERITED: list[Any] = []

#: Seconds a read (a ``GET``, a stat or a listing) that meets server errors is tried for.
RETRY_WAIT = 10.0
#: Seconds a read of the root record waits for a replacement of it under way to end.
REPLACE_WAIT = 10.0

#: URL schemes of WebDAV pools and the HTTP scheme each stands for.
SCHEMES = {"davs": "https", "https": "https", "dav": "http", "http": "http"}


def _webdav4() -> Any:
    try:
        import webdav4.client
    except ImportError:
        raise MissingDependencyError(
            "davs:// and https:// pools need webdav4: pip install 'bgcache[webdav]'"
        ) from None
    return webdav4.client


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
        UsageError: a malformed URL. MissingDependencyError: no webdav4.
    """

    def __init__(self, url: str) -> None:
        self.base, self.path = parse_url(url)
        scheme = url.partition("://")[0]
        self._url = f"{scheme}://{self.base.partition('://')[2]}{self.path}"
        self._module = _webdav4()
        self._timeout = remote_timeout()
        self._pid = -1
        self._dav: Any = None

    # -- the client, per process -----------------------------------------------------------
    def _client(self) -> Any:
        if self._pid != os.getpid():  # new, or a forked child: no connection of the parent's
            import httpx

            headers = {}
            token = bearer_token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            options: dict[str, Any] = {"timeout": self._timeout, "headers": headers}
            if self.base.startswith("https://"):
                options["verify"] = self._tls_context()
            if self._dav is not None:
                # the parent's client, in a forked child: never closed here (that could end
                # the parent's TLS session on the shared socket), kept from the collector
                _INHERITED.append(self._dav)
            http = httpx.Client(**options)
            self._dav = self._module.Client(self.base, http_client=http, retry=False)
            self._pid = os.getpid()
            weakref.finalize(self, http.close)  # its connections close with the storage
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

    def _full(self, key: str) -> str:
        return f"{self.path}/{key}" if key else self.path

    def _error(self, exc: BaseException, key: str, doing: str) -> PoolWriteError:
        import httpx

        where = f"pool '{self.url}'" + (f" ({key})" if key else "")
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status in (401, 403):
            what = "credentials refused" if status == 401 else "permission denied"
            return PoolWriteError(
                f"cannot {doing} {where}: {what} (HTTP {status}); check the bearer token "
                "($BEARER_TOKEN, $BEARER_TOKEN_FILE) or the X.509 proxy ($X509_USER_PROXY): "
                "renew an expired one, or use a path you may write"
            )
        tls = _tls_refusal(str(exc))
        if tls:
            return PoolWriteError(f"cannot {doing} {where}: {tls}")
        if isinstance(exc, httpx.TimeoutException | httpx.ConnectError | httpx.NetworkError):
            return PoolWriteError(
                f"cannot {doing} {where}: the server does not answer ({type(exc).__name__}); "
                f"check the host and port of {self.base} (timeout {self._timeout:.0f} s, "
                "$BGCACHE_REMOTE_TIMEOUT)"
            )
        detail = f"HTTP {status}" if status else type(exc).__name__
        message = f"cannot {doing} {where}: {detail}"
        if (status or 0) >= 500 or isinstance(exc, httpx.RemoteProtocolError):
            return TransientServerError(message)  # tried again where that is safe
        return PoolWriteError(message)

    def _call(self, key: str, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import httpx

        dav = self._module
        try:
            return fn(*args, **kwargs)
        except (dav.ResourceNotFound, dav.ResourceAlreadyExists):
            raise  # answers the callers ask for
        except dav.ForbiddenOperation:  # a MKCOL or MOVE the server refuses (403)
            raise self._error(_Status(_Forbidden()), key, doing) from None
        except dav.InsufficientStorage:
            raise PoolWriteError(
                f"cannot {doing} pool '{self.url}' ({key}): the server has no space left "
                "(HTTP 507); free space or choose another storage element"
            ) from None
        except (httpx.HTTPError, dav.ClientError) as exc:
            raise self._error(exc, key, doing) from None

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
        are; a server that keeps failing is reported after it.
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
        dav = self._client()
        try:
            info = self._again(self._call, key, "read", dav.info, self._full(key))
        except self._module.ResourceNotFound:
            return None
        return _entry(key.rsplit("/", 1)[-1], info)

    def _list(self, key: str) -> list[Entry]:
        dav = self._client()
        try:
            items = self._again(self._call, key, "list", dav.ls, self._full(key), detail=True)
        except self._module.ResourceNotFound:
            return []
        out = []
        for item in items:
            name = str(item.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
            if name:
                out.append(_entry(name, item))
        return out

    def _get(self, key: str, offset: int, length: int | None) -> bytes:
        """Bytes of ``key`` (a range of a block column: :meth:`_get_once`, tried again after
        a server error)."""
        data: bytes = self._again(self._get_once, key, offset, length)
        return data

    def _get_once(self, key: str, offset: int, length: int | None, *, close: bool = False) -> bytes:
        """Bytes of ``key`` by one GET; ``close`` asks the server to close the connection
        after it, so a body shorter than its ``Content-Length`` is an error at once."""
        import httpx

        dav = self._client()
        headers = {"Connection": "close"} if close else {}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + max(length, 1) - 1}"
        elif offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = dav.http.get(dav.join_url(self._full(key)), headers=headers)
        except httpx.HTTPError as exc:  # a body cut before its Content-Length: transient
            raise self._error(exc, key, "read") from None
        if response.status_code == 404:
            raise FileNotFoundError(f"{self.url}/{key}")
        if response.status_code == 416:  # a range past the end (an empty file)
            return b""
        if response.status_code >= 400:
            raise self._error(_Status(response), key, "read")
        data = bytes(response.content)
        if response.status_code == 200 and "Range" in headers:  # the server ignored it
            data = data[offset : None if length is None else offset + length]
        return data if length is None else data[:length]

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes of ``key`` (one ranged GET of ``max_bytes + 1``), or None if missing.

        A server error (5xx) or an answer cut short is tried again (:meth:`_again`); the
        root record is read by :meth:`_read_root_record`.
        """
        length = None if max_bytes is None else max_bytes + 1
        root = key == ZARR_JSON
        data = self._read_root_record(length) if root else self._read_file(key, length)
        if data is not None and max_bytes is not None and len(data) > max_bytes:
            raise self._too_big(key, None, max_bytes)
        return data

    def _read_file(self, key: str, length: int | None) -> bytes | None:
        try:
            return self._get(key, 0, length)
        except FileNotFoundError:
            return None

    def _read_root_record(self, length: int | None) -> bytes | None:
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
                outcome = self._get_once(ZARR_JSON, 0, length, close=True)
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
        response = self._call(
            key, "write to", dav.http.put, dav.join_url(self._full(key)), content=data
        )
        if response.status_code >= 400:
            raise self._error(_Status(response), key, "write to")

    def _move(self, source: str, target: str) -> None:
        dav = self._client()
        self._call(
            target, "write to", dav.move, self._full(source), self._full(target), overwrite=True
        )

    def _mkdir(self, key: str, *, parents: bool) -> bool:
        dav = self._client()
        parts = [p for p in self._full(key).split("/") if p]
        targets = (
            ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
            if parents
            else [self._full(key)]
        )
        created = False
        for target in targets:
            try:
                self._call(key, "write to", dav.mkdir, target)
                created = True
            except self._module.ResourceAlreadyExists:
                created = False
            except PoolWriteError:
                # two MKCOLs of one name at once: a server that checks before it creates
                # (wsgidav) may answer the second with an error instead of 405; the
                # directory exists, made by the other writer, and this call did not make it
                if self._stat_full(target):
                    created = False
                    continue
                raise
        return created

    def _stat_full(self, path: str) -> bool:
        try:
            self._again(self._call, path, "read", self._client().info, path)
        except (self._module.ResourceNotFound, PoolWriteError):
            return False
        return True

    def _remove(self, key: str) -> None:
        dav = self._client()
        with contextlib.suppress(self._module.ResourceNotFound):
            self._call(key, "delete from", dav.remove, self._full(key))

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


def _tls_refusal(text: str) -> str | None:
    """What a TLS error of ``text`` means for the user, or None if it is none.

    Example:
        >>> _tls_refusal("[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate "
        ...     "expired (_ssl.c:2580)")[:62]
        'the server refused the client certificate (certificate expired'
    """
    if not text.startswith("[SSL: "):
        return None
    reason = text.partition("] ")[2].rsplit(" (_ssl", 1)[0]
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = reason.partition("certificate verify failed: ")[2] or reason
        return (
            f"the server's certificate does not verify ({detail}); set X509_CERT_DIR to "
            "the grid CA directory (e.g. /etc/grid-security/certificates)"
        )
    if "ALERT" in text:
        detail = reason.split(" alert ", 1)[-1]
        return (
            f"the server refused the client certificate ({detail}); renew the proxy in "
            "$X509_USER_PROXY (voms-proxy-init), or use a bearer token ($BEARER_TOKEN)"
        )
    return f"TLS failed ({reason})"


class _Forbidden:
    status_code = 403


class _Status(Exception):
    """An HTTP answer that is an error, as :meth:`WebDAVStorage._error` reads it."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _entry(name: str, info: dict[str, Any]) -> Entry:
    kind = "dir" if info.get("type") == "directory" else "file"
    modified = info.get("modified")
    mtime = (
        float(modified.timestamp())
        if modified is not None and hasattr(modified, "timestamp")
        else None
    )
    return Entry(name, kind, int(info.get("content_length") or 0), mtime)  # type: ignore[arg-type]


__all__ = ["SCHEMES", "WebDAVStorage", "bearer_token", "parse_url"]
