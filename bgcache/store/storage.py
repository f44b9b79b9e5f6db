"""Where a pool's objects live: a small key/value interface and its local-disk backend.

Keys are ``/``-separated paths relative to the pool root, as in Zarr v3. The pool layer
(:mod:`bgcache.store.pool`) needs only what is here:

* ``read`` / ``read_range`` of an object;
* ``write``: an atomic, durable replace — the bytes go to ``<key>.<uuid>.partial``, are
  fsynced, and are renamed over the key, so a reader sees the old object or the new one,
  never part of one, and a killed writer leaves only ``*.partial`` files, never data;
* ``write_new``: the same, but only if the key does not exist yet (``link``), so that two
  writers creating the same node agree on one document without a lock server;
* ``children`` (names under a prefix), ``walk`` (every object, for ``verify``) and ``size``.

OS errors become :class:`~bgcache.errors.PoolWriteError` with the reason (read-only
location, disk full) and what to do.

Why not zarr-python's ``LocalStore`` (``benchmarks/pool.py --parts zarr``, see
``docs/performance.md``): it has no fsync, which the crash-safety contract needs before a
block's marker, and every call crosses into zarr's event loop: a ranged read took 8.5-10x
the time of this one, and bgcache's reader on ``LocalStore`` read a random event in 1.5x
the time (block-by-block reading: 0.7-1.4x between runs, within the noise).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

from bgcache.errors import NotAPoolError, PoolWriteError
from bgcache.store.format import PARTIAL_SUFFIX

#: What is at a pool location: nothing, a plain file/object, an empty or a non-empty folder.
State = Literal["missing", "file", "empty", "dir"]


#: Name prefix of the probe objects written by ``check_writable``.
PROBE_PREFIX = ".bgcache-write-test."


def is_transient(name: str) -> bool:
    """Whether a file name is a write in progress or a writability probe (never data).

    Example:
        >>> is_transient("zarr.json.1f2e.partial"), is_transient("zarr.json")
        (True, False)
    """
    return name.startswith(PROBE_PREFIX) or name.endswith(PARTIAL_SUFFIX)


class Storage(Protocol):
    """What the pool layer needs of a backend (see the module docstring)."""

    @property
    def url(self) -> str:
        """The location as users wrote it."""
        ...

    def absolute_url(self) -> str:
        """The location as another process or machine must open it."""
        ...

    def state(self) -> State:
        """What is at the location."""
        ...

    def read(self, key: str) -> bytes | None: ...
    def read_range(self, key: str, offset: int, length: int) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def children(self, prefix: str) -> list[str]: ...
    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]: ...
    def write(self, key: str, data: bytes) -> None: ...
    def write_new(self, key: str, data: bytes) -> bool: ...
    def sync_dir(self, key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def check_writable(self) -> None: ...
    def check_creatable(self) -> None: ...


class LocalStorage:
    """A pool directory on a local or network file system.

    Args:
        root: the pool directory.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     st = LocalStorage(tmp)
        ...     st.write("a/b.bin", b"hello")
        ...     st.read("a/b.bin"), st.read_range("a/b.bin", -3, 3), st.write_new("a/b.bin", b"x")
        (b'hello', b'llo', False)
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def url(self) -> str:
        """The pool location as users wrote it."""
        return str(self.root)

    def absolute_url(self) -> str:
        """The absolute path (what worker processes open)."""
        return str(self.root.absolute())

    def state(self) -> State:
        """``missing``, ``file``, ``empty`` (an empty directory) or ``dir``."""
        if not self.root.exists():
            return "missing"
        if not self.root.is_dir():
            return "file"
        # another writer's probe or partial file does not make the folder "not a pool"
        return "dir" if any(not is_transient(p.name) for p in self.root.iterdir()) else "empty"

    def check_creatable(self) -> None:
        """Raise now if a pool cannot be created at the (missing) location."""
        parent = self.root.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise NotAPoolError(
                f"'{self.url}': '{parent}' is a file, so no directory can be made in it"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PoolWriteError(
                f"cannot create pool '{self.url}': '{parent}' is read-only; "
                "build into a writable directory"
            )

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    # -- reading ------------------------------------------------------------------------
    def read(self, key: str) -> bytes | None:
        """The bytes of ``key``, or None if it does not exist."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            return None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (negative: from the end).

        Raises:
            FileNotFoundError: the object does not exist.
        """
        with self._path(key).open("rb") as f:
            if offset < 0:
                f.seek(offset, os.SEEK_END)
            else:
                f.seek(offset)
            return f.read(length)

    def exists(self, key: str) -> bool:
        """Whether the object or directory ``key`` exists."""
        return self._path(key).exists()

    def size(self, key: str) -> int | None:
        """Size in bytes of ``key`` (None if missing)."""
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (empty if it does not exist)."""
        try:
            with os.scandir(self._path(prefix)) as it:
                return sorted(entry.name for entry in it)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every object under ``prefix`` as ``(key, size)``, in sorted order."""
        base = self._path(prefix)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if rel == "." else f"{rel}/{name}"
                with contextlib.suppress(FileNotFoundError):
                    yield key, (Path(dirpath) / name).stat().st_size

    # -- writing ------------------------------------------------------------------------
    def write(self, key: str, data: bytes) -> None:
        """Atomically and durably replace ``key`` with ``data``.

        Raises:
            PoolWriteError: the location is read-only, the disk is full, or another OS error.
        """
        target = self._path(key)
        tmp = self._write_tmp(target, data)
        try:
            tmp.replace(target)
        except OSError as exc:
            _unlink(tmp)
            raise _write_error(exc, self.url, key) from None

    def write_new(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` unless it exists; True if this call created it."""
        target = self._path(key)
        tmp = self._write_tmp(target, data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise _write_error(exc, self.url, key) from None
            # file systems without hard links: exclusive create, then the atomic replace
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            os.close(fd)
            tmp.replace(target)
            return True
        finally:
            _unlink(tmp)
        return True

    def _write_tmp(self, target: Path, data: bytes) -> Path:
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _write_error(exc, self.url, str(target.relative_to(self.root))) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            _unlink(tmp)
            raise _write_error(exc, self.url, str(target.relative_to(self.root))) from None
        return tmp

    def sync_dir(self, key: str) -> None:
        """fsync the directory ``key`` so that renames in it survive a power loss."""
        with contextlib.suppress(OSError):
            fd = os.open(self._path(key), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def delete(self, key: str) -> None:
        """Remove the object ``key`` if it exists."""
        _unlink(self._path(key))

    def check_writable(self) -> None:
        """Raise :class:`PoolWriteError` now if the pool location cannot be written."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / probe).write_bytes(b"")
        except OSError as exc:
            raise _write_error(exc, self.url, "") from None
        _unlink(self.root / probe)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _write_error(exc: OSError, url: str, key: str) -> PoolWriteError:
    where = f"pool '{url}'" + (f" ({key})" if key else "")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PoolWriteError(
            f"cannot write to {where}: the location is read-only; "
            "build into a writable directory (reading a read-only pool works)"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PoolWriteError(
            f"cannot write to {where}: no space left on the device; complete blocks are "
            "kept: free space, then run the same build again to resume"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return PoolWriteError(
            f"cannot write to {where}: a file stands where a directory is needed; "
            "choose another pool path"
        )
    reason = exc.strerror or type(exc).__name__
    return PoolWriteError(f"cannot write to {where}: {reason}")


__all__ = ["PROBE_PREFIX", "LocalStorage", "State", "Storage", "is_transient"]
