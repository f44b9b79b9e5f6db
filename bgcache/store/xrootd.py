"""Pools on XRootD storage (``root://host[:port]//path/pool``), with the XRootD client.

The grid backend of :mod:`bgcache.store.storage` that Belle II's storage elements speak;
see :mod:`bgcache.store.remote` for how writes stay crash-safe and how several writers
create one pool. The client is the XRootD project's own Python binding (``pip install
'bgcache[xrootd]'``, the ``xrootd`` package: the same client library ``xrdcp`` uses),
synchronous, imported only here; fsspec-xrootd wraps the same client in an event loop that
bgcache's threads would only cross.

Authentication is the client's: an X.509 proxy from ``$X509_USER_PROXY`` (gsi, with the
CAs of ``$X509_CERT_DIR``) and WLCG bearer tokens from ``$BEARER_TOKEN`` /
``$BEARER_TOKEN_FILE`` (ztn) are found by its security plugins as for ``xrdcp``; bgcache
checks only that the proxy and CA directory named exist, and logs nothing of them.

Answers are read under the limits of :mod:`bgcache.store.remote_limits`. Every request has
the deadline :func:`~bgcache.store.remote_limits.remote_timeout` (``$BGCACHE_REMOTE_TIMEOUT``,
60 s): the client's own request timeout, which counts from sending a request to the last
byte of its answer (a read of a whole object is one request), checked every second
(``TimeoutResolution``; its default, 15 s, would let a request run 15 s past its deadline);
and the client is told to give up connecting after one window of that length (its default
retries for 10 minutes: measured 8 minutes against a closed port). A read asks for no more
than its cap: a whole object's size is taken from the open file and checked against the
cap before it is read, a ranged read asks its range, and an answer longer than asked is
refused. A listing is collected whole by the client (the binding has no streamed one) and
refused after it when it holds more than
:data:`~bgcache.store.remote_limits.MAX_LISTING_ENTRIES` entries. The client's fork handler
is on. Open files are kept (up to :data:`OPEN_FILES`) so that a block's reads cost one
request each; they are never carried into a forked child, which opens its own.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from typing import Any

from bgcache.errors import MissingDependencyError, PoolObjectError, PoolWriteError, UsageError
from bgcache.store.remote import Entry, RemoteStorage, x509_files
from bgcache.store.remote_limits import (
    MAX_LISTING_ENTRIES,
    more_than_asked,
    remote_timeout,
    too_big,
    too_many_entries,
    too_slow,
)

#: Files kept open per process (shards and counts of the blocks being read).
OPEN_FILES = 64

#: XRootD error numbers (XProtocol.hh) this backend tells apart.
_NOT_FOUND, _EXISTS, _NOT_AUTHORIZED, _NOT_DIR, _IS_DIR = 3011, 3018, 3010, 3015, 3016
#: The client's status code of a request that missed its timeout (XrdClStatus.hh).
_EXPIRED = 206
_configured: list[float] = []


def _client() -> Any:
    try:
        # typed Any: the binding's own annotations are partial (EnvPutInt is untyped)
        client: Any = importlib.import_module("XRootD.client")
    except ImportError:
        raise MissingDependencyError(
            "root:// pools need the XRootD client: pip install 'bgcache[xrootd]'"
        ) from None
    timeout = remote_timeout()
    if not _configured:  # before the first connection: the client reads these then
        client.EnvPutInt("ConnectionWindow", max(round(timeout), 1))
        client.EnvPutInt("ConnectionRetry", 1)
        client.EnvPutInt("RequestTimeout", max(round(timeout), 1))
        client.EnvPutInt("TimeoutResolution", 1)  # timeouts checked every second
        # the client's own threads are stopped around fork() and restarted in both
        # processes, so a child never inherits a lock one of them held
        client.EnvPutInt("RunForkHandler", 1)
        _configured.append(timeout)
    return client


def parse_url(url: str) -> tuple[str, str]:
    """``(server, path)`` of ``root://host[:port]//path``.

    Example:
        >>> parse_url("root://se.example.org:1094//belle/pools/convnet")
        ('root://se.example.org:1094', '/belle/pools/convnet')
    """
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if not host or not slash:
        raise UsageError(f"pool URL {url!r}: expected {scheme}://host[:port]//path/to/pool")
    path = "/" + path.lstrip("/")
    if path == "/":
        raise UsageError(f"pool URL {url!r} names no path: expected {scheme}://host//path/to/pool")
    return f"{scheme}://{host}", path.rstrip("/")


class XRootDStorage(RemoteStorage):
    """A pool at ``root://host[:port]//path`` (``roots://`` for TLS).

    Raises:
        UsageError: a malformed URL. MissingDependencyError: no XRootD client.
    """

    def __init__(self, url: str) -> None:
        self.server, self.path = parse_url(url)
        self._url = f"{self.server}/{self.path}"
        self._client = _client()
        self._timeout = max(round(remote_timeout()), 1)  # the binding takes whole seconds
        self._pid = -1
        self._lock = threading.Lock()
        self._files: OrderedDict[str, Any] = OrderedDict()
        self._fs: Any = None

    # -- the client, per process -----------------------------------------------------------
    def _filesystem(self) -> Any:
        if self._pid != os.getpid():  # new, or a forked child: nothing of the parent's
            x509_files(self.url)  # named but missing: said now, not as "no protocols left"
            self._files = OrderedDict()
            self._lock = threading.Lock()
            self._fs = self._client.FileSystem(self.server)
            self._pid = os.getpid()
        return self._fs

    def _full(self, key: str) -> str:
        return f"{self.path}/{key}" if key else self.path

    def _error(self, status: Any, key: str, doing: str) -> Exception:
        where = f"pool '{self.url}'" + (f" ({key})" if key else "")
        errno = int(getattr(status, "errno", 0) or 0)
        message = " ".join(str(getattr(status, "message", "")).split())
        if "auth failed" in message.lower():  # authentication: no credential it accepts
            return PoolWriteError(
                f"cannot {doing} {where}: credentials refused ({message}); check the X.509 "
                "proxy ($X509_USER_PROXY; renew an expired one with voms-proxy-init), the CA "
                "directory ($X509_CERT_DIR) or the bearer token ($BEARER_TOKEN, "
                "$BEARER_TOKEN_FILE)"
            )
        if errno == _NOT_AUTHORIZED or "auth" in message.lower() or "permission" in message.lower():
            return PoolWriteError(
                f"cannot {doing} {where}: permission denied ({message}); check the "
                "credentials ($X509_USER_PROXY, $BEARER_TOKEN or $BEARER_TOKEN_FILE: renew an "
                "expired proxy or token) and the path's permissions"
            )
        if "read/only" in message or "read-only" in message.lower():
            return PoolWriteError(
                f"cannot {doing} {where}: the server serves this path read-only ({message}); "
                "write the pool to a path you may write"
            )
        if int(getattr(status, "code", 0) or 0) == _EXPIRED:
            return too_slow(self.url, key, self._timeout, doing)
        if getattr(status, "fatal", False) or "connection" in message.lower():
            return PoolWriteError(
                f"cannot {doing} {where}: the server does not answer ({message}); check the "
                f"host and port of {self.server} (deadline {self._timeout} s, "
                "$BGCACHE_REMOTE_TIMEOUT)"
            )
        return PoolWriteError(f"cannot {doing} {where}: {message or 'error'}")

    # -- primitives ------------------------------------------------------------------------
    def _stat(self, key: str) -> Entry | None:
        status, info = self._filesystem().stat(self._full(key), timeout=self._timeout)
        if not status.ok:
            if status.errno == _NOT_FOUND:
                return None
            raise self._error(status, key, "read")
        return _entry(key.rsplit("/", 1)[-1], info)

    def _list(self, key: str) -> list[Entry]:
        from XRootD.client.flags import DirListFlags

        status, listing = self._filesystem().dirlist(
            self._full(key), DirListFlags.STAT, timeout=self._timeout
        )
        if not status.ok:
            if status.errno in (_NOT_FOUND, _NOT_DIR):
                return []
            raise self._error(status, key, "list")
        entries = [_entry(item.name, item.statinfo) for item in listing]
        if len(entries) > MAX_LISTING_ENTRIES:
            raise too_many_entries(self.url, key, len(entries))
        return entries

    def _open_new(self, key: str) -> Any:
        """A newly opened file of ``key`` for reading.

        Raises:
            FileNotFoundError: it does not exist. PoolObjectError: it is a directory.
        """
        f = self._client.File()
        status, _ = f.open(f"{self.server}/{self._full(key)}", timeout=self._timeout)
        if not status.ok:
            if status.errno == _NOT_FOUND:
                raise FileNotFoundError(f"{self.url}/{key}")
            if status.errno == _IS_DIR:
                raise PoolObjectError(
                    f"pool '{self.url}': '{key}' is a directory, not a file: run 'bgcache verify'"
                )
            raise self._error(status, key, "read")
        return f

    def _open(self, key: str) -> Any:
        self._filesystem()
        with self._lock:
            f = self._files.get(key)
            if f is not None:
                self._files.move_to_end(key)
                return f
        f = self._open_new(key)
        with self._lock:
            self._files[key] = f
            while len(self._files) > OPEN_FILES:
                _, old = self._files.popitem(last=False)
                old.close(timeout=self._timeout)
        return f

    def _get(self, key: str, offset: int, length: int | None) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (None: to the end, from the open
        file's size: the protocol reads a length 0 as the whole file).

        Raises:
            StorageServerError: the server sent more than asked.
        """
        if length is not None and length <= 0:
            return b""
        f = self._open(key)
        if length is None:
            status, info = f.stat(timeout=self._timeout)
            if not status.ok:
                raise self._error(status, key, "read")
            length = max(int(info.size) - offset, 0)
            if not length:
                return b""
        status, data = f.read(offset, length, timeout=self._timeout)
        if not status.ok:  # the handle went stale (the server restarted): open it again
            self._drop(key)
            f = self._open(key)
            status, data = f.read(offset, length, timeout=self._timeout)
            if not status.ok:
                raise self._error(status, key, "read")
        if len(data) > length:
            raise more_than_asked(self.url, key, length, whole=False)
        return bytes(data)

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes of ``key`` (None if missing), its size taken from the open file, so the
        read is of the one version that was opened."""
        self._filesystem()
        try:
            f = self._open_new(key)
        except FileNotFoundError:
            return None
        try:
            status, info = f.stat(timeout=self._timeout)
            if not status.ok:
                raise self._error(status, key, "read")
            size = int(info.size)
            if max_bytes is not None and size > max_bytes:
                raise too_big(self.url, key, size, max_bytes)
            if not size:
                return b""
            status, data = f.read(0, size, timeout=self._timeout)
            if not status.ok:
                raise self._error(status, key, "read")
            if len(data) > size:
                raise more_than_asked(self.url, key, size, whole=False)
            return bytes(data)
        finally:
            f.close(timeout=self._timeout)

    def _drop(self, key: str) -> None:
        with self._lock:
            f = self._files.pop(key, None)
        if f is not None:
            f.close(timeout=self._timeout)

    def _put(self, key: str, data: bytes) -> None:
        from XRootD.client.flags import OpenFlags

        f = self._client.File()
        self._filesystem()
        status, _ = f.open(
            f"{self.server}/{self._full(key)}",
            OpenFlags.DELETE | OpenFlags.MAKEPATH,
            timeout=self._timeout,
        )
        if status.ok and data:
            status, _ = f.write(data, timeout=self._timeout)
        if status.ok:
            status, _ = f.close(timeout=self._timeout)
        else:
            f.close(timeout=self._timeout)
        if not status.ok:
            raise self._error(status, key, "write to")

    def _move(self, source: str, target: str) -> None:
        self._drop(target)  # an open handle of the old file would read it on
        status, _ = self._filesystem().mv(
            self._full(source), self._full(target), timeout=self._timeout
        )
        if not status.ok:
            raise self._error(status, target, "write to")

    def _mkdir(self, key: str, *, parents: bool) -> bool:
        from XRootD.client.flags import AccessMode, MkDirFlags

        flags = MkDirFlags.MAKEPATH if parents else MkDirFlags.NONE
        mode = AccessMode.UR | AccessMode.UW | AccessMode.UX | AccessMode.GR | AccessMode.GX
        mode |= AccessMode.OR | AccessMode.OX
        status, _ = self._filesystem().mkdir(self._full(key), flags, mode, timeout=self._timeout)
        if status.ok:
            return True
        if status.errno == _EXISTS or (parents and self._stat(key) is not None):
            return False
        raise self._error(status, key, "write to")

    def _remove(self, key: str) -> None:
        self._drop(key)
        status, _ = self._filesystem().rm(self._full(key), timeout=self._timeout)
        if not status.ok and status.errno != _NOT_FOUND:
            raise self._error(status, key, "delete from")

    def _rmdir(self, key: str) -> None:
        status, _ = self._filesystem().rmdir(self._full(key), timeout=self._timeout)
        if not status.ok and status.errno != _NOT_FOUND:
            raise self._error(status, key, "delete from")


def _entry(name: str, info: Any) -> Entry:
    from XRootD.client.flags import StatInfoFlags

    flags = int(info.flags)
    if flags & StatInfoFlags.IS_DIR:
        kind = "dir"
    elif flags & StatInfoFlags.OTHER:
        kind = "other"
    else:
        kind = "file"
    return Entry(name, kind, int(info.size), float(info.modtime))  # type: ignore[arg-type]


__all__ = ["XRootDStorage", "parse_url"]
