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
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

from bgcache.errors import NotAPoolError, PoolObjectError, PoolWriteError
from bgcache.store.format import PARTIAL_SUFFIX
from bgcache.store.remote_limits import MAX_WALK_DEPTH

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

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None: ...
    def read_range(self, key: str, offset: int, length: int) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def children(self, prefix: str) -> list[str]: ...
    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]: ...
    def write(self, key: str, data: bytes) -> None: ...
    def write_new(self, key: str, data: bytes) -> bool: ...
    def sync_dir(self, key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def mtime(self, key: str) -> float | None: ...
    def prune(self, prefix: str) -> None: ...
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
    # A pool is untrusted input: every object is opened component by component from the
    # pool root without following links (openat with O_NOFOLLOW), and must be a regular
    # file (or a directory, for listings). A link, a device or a named pipe is refused with
    # PoolObjectError naming it, so nothing outside the pool is ever read, no read blocks,
    # and /dev/zero cannot be read until memory runs out. The root itself may be a link.

    def _refused(self, exc: OSError, key: str) -> Exception:
        """The error for an ``open`` of ``key`` that failed with ``exc``."""
        where = f"pool '{self.url}': '{key}'"
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_link(self._path(key))):
            return PoolObjectError(
                f"{where} is a symbolic link; a pool holds only regular files and directories "
                "inside it: copy the pool with its links resolved (cp -rL) or remove the link"
            )
        if exc.errno in (errno.EACCES, errno.EPERM):
            return PoolObjectError(
                f"{where} cannot be read: permission denied; ask the pool's owner to make it "
                "readable (chmod -R a+rX)"
            )
        if exc.errno == errno.ENAMETOOLONG:
            return PoolObjectError(f"{where}: the path is too long for this file system")
        return exc  # FileNotFoundError, NotADirectoryError...: the callers' "missing"

    def _open_dir(self, key: str) -> int:
        """A file descriptor of directory ``key`` (``""``: the root), opened without
        following a link below the root."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        done: list[str] = []
        for part in key.split("/") if key else []:
            done.append(part)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise self._refused(exc, "/".join(done)) from None
            finally:
                os.close(fd)
            fd = child
        return fd

    def _open_file(self, key: str) -> tuple[int, int]:
        """``(fd, size)`` of the regular file ``key``.

        Raises:
            FileNotFoundError, NotADirectoryError, IsADirectoryError: it is missing.
            PoolObjectError: it is a link, not a regular file, or unreadable.
        """
        parent, _, name = key.rpartition("/")
        dir_fd = self._open_dir(parent)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise self._refused(exc, key) from None
        finally:
            os.close(dir_fd)
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            return fd, info.st_size
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(key)
        raise PoolObjectError(
            f"pool '{self.url}': '{key}' is not a regular file ({_kind(info.st_mode)}); a pool "
            "holds only regular files and directories: remove it"
        )

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The bytes of ``key``, or None if it does not exist.

        Raises:
            PoolObjectError: ``key`` is not a regular file in the pool, is unreadable, or
                holds more than ``max_bytes``.
        """
        try:
            fd, size = self._open_file(key)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            if max_bytes is not None and size > max_bytes:
                raise PoolObjectError(
                    f"pool '{self.url}': '{key}' holds {size:,} bytes, more than the "
                    f"{max_bytes:,} its kind can (damaged or hostile pool): run 'bgcache verify'"
                )
            return _read_all(fd, size if max_bytes is None else min(size, max_bytes))
        finally:
            os.close(fd)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (negative: from the end); fewer where
        the object is shorter.

        Raises:
            FileNotFoundError: the object does not exist.
            PoolObjectError: as for :meth:`read`.
        """
        fd, size = self._open_file(key)
        try:
            start = size + offset if offset < 0 else offset
            return os.pread(fd, max(0, min(length, size - start)), start) if start >= 0 else b""
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        """Whether the object or directory ``key`` exists (a link counts: reading refuses it)."""
        return os.path.lexists(self._path(key))

    def size(self, key: str) -> int | None:
        """Size in bytes of ``key`` (None if missing)."""
        try:
            fd, size = self._open_file(key)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        os.close(fd)
        return size

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (empty if it does not exist)."""
        try:
            fd = self._open_dir(prefix)
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            with os.scandir(fd) as it:
                return sorted(entry.name for entry in it)
        finally:
            os.close(fd)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every object under ``prefix`` as ``(key, size)``, in sorted order.

        Raises:
            PoolObjectError: an entry is a link, a device, a named pipe or unreadable, or
                directories nest deeper than
                :data:`~bgcache.store.remote_limits.MAX_WALK_DEPTH` (no pool's do; the
                remote backends' bound, so that a hostile pool nested thousands deep is
                refused naming the place instead of ending in a RecursionError).
        """
        if prefix.count("/") >= MAX_WALK_DEPTH:
            raise PoolObjectError(
                f"pool '{self.url}': '{prefix}' nests directories deeper than "
                f"{MAX_WALK_DEPTH}, deeper than any pool's (damaged or hostile pool): "
                "remove what is below it"
            )
        for name in self.children(prefix):
            key = f"{prefix}/{name}" if prefix else name
            try:
                info = self._path(key).lstat()
            except FileNotFoundError:
                continue  # removed meanwhile (a writer's partial file)
            if stat.S_ISDIR(info.st_mode):
                yield from self.walk(key)
            elif stat.S_ISREG(info.st_mode):
                yield key, info.st_size
            elif stat.S_ISLNK(info.st_mode):
                raise self._refused(OSError(errno.ELOOP, "link"), key)
            else:
                raise PoolObjectError(
                    f"pool '{self.url}': '{key}' is not a regular file "
                    f"({_kind(info.st_mode)}); a pool holds only regular files and "
                    "directories: remove it"
                )

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

    def _check_inside(self, key: str) -> None:
        """Refuse to write through a link below the root (it could lead out of the pool)."""
        parts = key.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if _is_link(self._path(sub)):
                raise self._refused(OSError(errno.ELOOP, "link"), sub)

    def _write_tmp(self, target: Path, data: bytes) -> Path:
        self._check_inside(target.relative_to(self.root).as_posix())
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
        self._check_inside(key)
        _unlink(self._path(key))

    def mtime(self, key: str) -> float | None:
        """When ``key`` was last written (seconds since the epoch), None if it is missing."""
        try:
            return self._path(key).lstat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None

    def prune(self, prefix: str) -> None:
        """Remove the directories left empty under ``prefix`` (and ``prefix`` itself)."""
        self._check_inside(prefix)
        for name in self.children(prefix):
            key = f"{prefix}/{name}"
            if stat.S_ISDIR(self._path(key).lstat().st_mode):
                self.prune(key)
        with contextlib.suppress(OSError):  # not empty: something was written meanwhile
            self._path(prefix).rmdir()

    def check_writable(self) -> None:
        """Raise :class:`PoolWriteError` now if the pool location cannot be written."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / probe).write_bytes(b"")
        except OSError as exc:
            raise _write_error(exc, self.url, "") from None
        _unlink(self.root / probe)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a named pipe must not wait for a writer (it is then refused by fstat)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def _read_all(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``fd`` (a file that shrank: fewer)."""
    parts = []
    offset = 0
    while offset < size:
        part = os.pread(fd, size - offset, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


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
            "kept: free space, then run the same command again to resume"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return PoolWriteError(
            f"cannot write to {where}: a file stands where a directory is needed; "
            "choose another pool path"
        )
    reason = exc.strerror or type(exc).__name__
    return PoolWriteError(f"cannot write to {where}: {reason}")


__all__ = ["PROBE_PREFIX", "LocalStorage", "State", "Storage", "is_transient"]
