"""What the grid storage backends share: XRootD (``root://``) and WebDAV (``davs://``).

:class:`RemoteStorage` implements the :class:`~bgcache.store.storage.Storage` interface on
a few file-system primitives of a protocol (stat, list, ranged read, write, rename,
create a directory, remove); :mod:`bgcache.store.xrootd` and :mod:`bgcache.store.webdav`
provide them. Both protocols address a hierarchical name space on a storage element, with
the two operations the pool's crash-safety and multi-writer contract needs:

* ``write`` is an atomic replace: the bytes go to ``<key>.<uuid>.partial`` and are renamed
  over the key (XRootD ``mv``, WebDAV ``MOVE`` with ``Overwrite: T``), so a reader sees the
  old object or the new one, and a killed writer leaves only ``*.partial`` objects, which
  readers ignore and ``bgcache gc`` removes. A rename the server fails (HTTP 5xx: wsgidav
  and Apache's mod_dav delete the target first, and a second writer's MOVE then fails on
  the target the first one deleted) is repeated while the partial object, whose name only
  this writer knows, is still there; once it is gone the rename happened. Where the rename
  itself is not atomic, the backend's ``read`` of the root record, the one document
  written more than once, tells a torn read from a missing or damaged record (see
  :mod:`bgcache.store.webdav`);
* ``write_new`` (create-if-absent: the root, the streams group, each stream) needs one
  operation that fails when its target exists. Neither protocol has a rename that refuses
  to overwrite atomically (XRootD ``mv`` overwrites; WebDAV ``Overwrite: F`` is a check
  before the move on common servers), so the claim is a directory: creating
  ``<key>.claim.partial`` (XRootD ``mkdir``, WebDAV ``MKCOL``) fails when it exists, on
  every server whose name space is a file system or a database with unique names. The
  writer that created the claim writes the document (atomic replace as above) and removes
  the claim; a writer that finds a claim waits for the document to appear
  (:data:`CLAIM_WAIT` seconds) and reads it. A claim whose writer was killed before the
  document exists blocks the creation with an error that names it (remove it once no
  writer runs).

``sync_dir`` does nothing: a write that returned is durable on the server.

Every answer of a server is read under the limits of :mod:`bgcache.store.remote_limits`
(caps per object kind, a deadline per request, bounded listings; a walk at most
:data:`~bgcache.store.remote_limits.MAX_WALK_DEPTH` directories deep), which S3 shares.

A backend keeps no connection across ``fork``: its client is made anew in a process whose
pid differs from the one that made it (basf2's multiprocessing and torch's DataLoader
workers fork after the overlay opened its pool).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bgcache.errors import PoolObjectError, PoolWriteError, StorageServerError, UsageError
from bgcache.store.format import PARTIAL_SUFFIX
from bgcache.store.remote_limits import MAX_WALK_DEPTH
from bgcache.store.storage import PROBE_PREFIX, State, is_transient

#: Seconds a writer that finds another's claim waits for the document it creates.
CLAIM_WAIT = 60.0
#: Suffix of a create-if-absent claim (a directory; transient, like a partial file).
CLAIM_SUFFIX = ".claim" + PARTIAL_SUFFIX
#: Times a rename that the server failed is tried again (its source still there).
MOVE_RETRIES = 5


def x509_files(url: str) -> tuple[str | None, str | None]:
    """``(proxy, CA directory)`` of ``$X509_USER_PROXY`` and ``$X509_CERT_DIR`` (None where
    unset), once they are known to be a readable file and a directory: the grid clients
    would otherwise fail later and say less (XRootD's: "no protocols left to try").

    Raises:
        UsageError: a variable names no readable file, or no directory.
    """
    proxy = os.environ.get("X509_USER_PROXY", "").strip() or None
    cert_dir = os.environ.get("X509_CERT_DIR", "").strip() or None
    if proxy:
        try:
            with Path(proxy).open("rb"):
                pass
        except OSError as exc:
            what = (exc.strerror or type(exc).__name__).lower()
            raise UsageError(
                f"X509_USER_PROXY '{proxy}' for pool '{url}': {what}; make a proxy "
                "(voms-proxy-init) or unset X509_USER_PROXY to use a bearer token"
            ) from None
    if cert_dir and not Path(cert_dir).is_dir():
        raise UsageError(
            f"X509_CERT_DIR '{cert_dir}' for pool '{url}' is not a directory: set it to the "
            "grid CA directory (e.g. /etc/grid-security/certificates)"
        )
    return proxy, cert_dir


class TransientServerError(PoolWriteError):
    """A server's failure that a repeat of the request may not meet: HTTP 5xx, or an
    answer cut short. Readers and writers of :class:`RemoteStorage` try again where that
    is safe; one that stays is reported as the :class:`PoolWriteError` it is."""


@dataclass(frozen=True)
class Entry:
    """What a stat or a listing says about a name."""

    name: str
    kind: Literal["file", "dir", "other"]
    size: int
    mtime: float | None


class RemoteStorage:
    """The :class:`~bgcache.store.storage.Storage` interface on a protocol's primitives.

    Subclasses set :attr:`_url` and implement ``_stat``, ``_list``, ``_get``, ``_put``,
    ``_move``, ``_mkdir``, ``_remove`` and ``_rmdir`` on paths relative to the pool root
    (``""`` is the root); ``_mkdir`` returns False when the directory exists.
    """

    _url: str

    # -- primitives (per protocol) ---------------------------------------------------------
    def _stat(self, key: str) -> Entry | None:
        raise NotImplementedError

    def _list(self, key: str) -> list[Entry]:
        raise NotImplementedError

    def _get(self, key: str, offset: int, length: int | None) -> bytes:
        """Bytes of ``key``: a range of a block column, whose content never changes once
        written, so a backend may keep the file open between reads."""
        raise NotImplementedError

    def _put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _move(self, source: str, target: str) -> None:
        raise NotImplementedError

    def _mkdir(self, key: str, *, parents: bool) -> bool:
        raise NotImplementedError

    def _remove(self, key: str) -> None:
        raise NotImplementedError

    def _rmdir(self, key: str) -> None:
        raise NotImplementedError

    # -- names -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The pool's URL."""
        return self._url

    def absolute_url(self) -> str:
        """The URL (already absolute)."""
        return self._url

    @staticmethod
    def _join(prefix: str, name: str) -> str:
        return f"{prefix}/{name}" if prefix else name

    # -- reading ---------------------------------------------------------------------------
    def state(self) -> State:
        """``missing``, ``file``, ``empty`` (an empty directory) or ``dir``."""
        entry = self._stat("")
        if entry is None:
            return "missing"
        if entry.kind != "dir":
            return "file"
        return "dir" if any(not is_transient(e.name) for e in self._list("")) else "empty"

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes of ``key``, or None if it does not exist: one version of it, read through
        one open file or one request (a stat and then a read by name could see two versions
        of a document that a concurrent writer replaces, and return a mix of them).

        Raises:
            PoolObjectError: it is not a file, or holds more than ``max_bytes``.
        """
        raise NotImplementedError

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (negative: from the end).

        Raises:
            FileNotFoundError: the object does not exist.
        """
        if offset < 0:
            size = self.size(key)
            if size is None:
                raise FileNotFoundError(f"{self.url}/{key}")
            offset = max(size + offset, 0)
        return self._get(key, offset, length)

    def size(self, key: str) -> int | None:
        """Size of the file ``key`` (None if missing)."""
        entry = self._stat(key)
        return None if entry is None or entry.kind == "dir" else entry.size

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists (a file or a directory)."""
        return self._stat(key) is not None

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (empty if it does not exist)."""
        return sorted(e.name for e in self._list(prefix))

    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every file under ``prefix`` as ``(key, size)``, in sorted order.

        Raises:
            PoolObjectError: an entry that is neither a file nor a directory.
            StorageServerError: directories nested deeper than
                :data:`~bgcache.store.remote_limits.MAX_WALK_DEPTH` (no pool's are).
        """
        if prefix.count("/") >= MAX_WALK_DEPTH:
            raise StorageServerError(
                f"cannot list pool '{self.url}' ({prefix}): the server lists directories "
                f"nested deeper than {MAX_WALK_DEPTH} (MAX_WALK_DEPTH), deeper than any "
                "pool's: a misbehaving server, or a directory that is no pool's"
            )
        for entry in sorted(self._list(prefix), key=lambda e: e.name):
            key = self._join(prefix, entry.name)
            if entry.kind == "dir":
                yield from self.walk(key)
            elif entry.kind == "file":
                yield key, entry.size
            else:
                raise PoolObjectError(
                    f"pool '{self.url}': '{key}' is not a file or a directory: remove it"
                )

    def mtime(self, key: str) -> float | None:
        """When ``key`` was last written (seconds since the epoch), None if it is missing."""
        entry = self._stat(key)
        return None if entry is None else entry.mtime

    # -- writing ---------------------------------------------------------------------------
    def _parent_for(self, key: str) -> None:
        """Create the directory a write into ``key`` needs, once per process and directory
        (a build writes many objects into each; directories are removed only by ``gc``,
        from superseded blocks that no build writes again)."""
        parent = key.rsplit("/", 1)[0] if "/" in key else ""
        if not parent:
            return
        made = self._made_dirs()
        if parent not in made:
            self._mkdir(parent, parents=True)
            made.add(parent)

    def _made_dirs(self) -> set[str]:
        mine: tuple[int, set[str]] | None = getattr(self, "_made", None)
        if mine is None or mine[0] != os.getpid():
            mine = (os.getpid(), set())
            self._made = mine
        return mine[1]

    def write(self, key: str, data: bytes) -> None:
        """Replace ``key`` with ``data`` atomically (a partial object renamed over it).

        Raises:
            PoolWriteError: the server refused or could not be reached.
        """
        self._parent_for(key)
        tmp = f"{key}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        self._put(tmp, data)
        try:
            self._replace(tmp, key)
        except BaseException:
            self._forget(tmp)
            raise

    def _replace(self, tmp: str, key: str) -> None:
        """Rename ``tmp`` over ``key``; a rename the server failed is tried again while
        ``tmp`` is there (see the module docstring), and done once it is gone."""
        for attempt in range(MOVE_RETRIES + 1):
            try:
                self._move(tmp, key)
                return
            except TransientServerError:
                if self._stat(tmp) is None:  # renamed, only the answer failed
                    return
                if attempt == MOVE_RETRIES:
                    raise
            time.sleep(0.02 * 2**attempt)

    def _forget(self, key: str) -> None:
        with contextlib.suppress(OSError, PoolWriteError):  # a partial object: gc removes it
            self._remove(key)

    def write_new(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` unless it exists; True if this call created it (see
        the module docstring: a claim directory makes the creation exclusive).

        Raises:
            PoolWriteError: a claim that no writer completes within :data:`CLAIM_WAIT`
                seconds, or the server refused.
        """
        if self._stat(key) is not None:
            return False
        self._parent_for(key)
        claim = key + CLAIM_SUFFIX
        if not self._mkdir(claim, parents=False):
            deadline = time.monotonic() + CLAIM_WAIT
            while time.monotonic() < deadline:
                if self._stat(key) is not None:
                    return False
                time.sleep(0.2)
            raise PoolWriteError(
                f"pool '{self.url}': another writer claimed '{key}' (the directory "
                f"'{claim}') but has not written it in {CLAIM_WAIT:.0f} s: if no other "
                "writer is running, remove that directory and run the command again"
            )
        try:
            if self._stat(key) is not None:  # created and unclaimed just before our claim
                return False
            self.write(key, data)
            return True
        finally:
            # a leftover claim of an existing key is never consulted again
            with contextlib.suppress(OSError, PoolWriteError):
                self._rmdir(claim)

    def sync_dir(self, key: str) -> None:
        """Nothing to do: a write that returned is durable on the server."""

    def delete(self, key: str) -> None:
        """Remove the file ``key`` if it exists."""
        if self._stat(key) is not None:
            self._remove(key)

    def prune(self, prefix: str) -> None:
        """Remove the directories left empty under ``prefix`` (and ``prefix`` itself)."""
        for entry in self._list(prefix):
            if entry.kind == "dir":
                self.prune(self._join(prefix, entry.name))
        if not self._list(prefix):
            with contextlib.suppress(OSError, PoolWriteError):  # written meanwhile
                self._rmdir(prefix)

    def check_writable(self) -> None:
        """Raise :class:`PoolWriteError` now if the pool location cannot be written."""
        self._mkdir("", parents=True)
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        self._put(probe, b"")
        self._remove(probe)

    def check_creatable(self) -> None:
        """Raise now if a pool cannot be created at the (missing) location."""
        self.check_writable()


__all__ = [
    "CLAIM_SUFFIX",
    "CLAIM_WAIT",
    "MOVE_RETRIES",
    "Entry",
    "RemoteStorage",
    "TransientServerError",
    "x509_files",
]
