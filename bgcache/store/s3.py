"""Pools on S3 and S3-compatible object stores (``s3://bucket/prefix``), with boto3.

The object-store backend of :mod:`bgcache.store.storage` (same interface as
:class:`~bgcache.store.storage.LocalStorage`). Configuration follows the AWS/boto3
conventions, which s3fs and obstore share: credentials from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (or ``~/.aws``, profiles, instance roles), the region from
``AWS_DEFAULT_REGION``, and the endpoint of an S3-compatible server (MinIO, Ceph, moto...)
from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.

Crash safety and several writers without rename (DESIGN 4 on object storage):

* a PUT is atomic: readers see the old object or the new one, never part of one, so every
  object is written in place (no temporary name), and a block's marker is written last,
  after its columns: until the marker exists the block is invisible, and a killed writer
  leaves column objects without a marker, which readers ignore and a resumed build
  overwrites;
* *create-if-absent* (root and stream groups) is a conditional PUT (``If-None-Match: *``):
  exactly one writer creates the document, as with the hard link on a file system;
* ``sync_dir`` is a no-op: a PUT that succeeded is durable.

boto3 is an optional dependency (``pip install 'bgcache[s3]'``), imported only here.

Why boto3 and not zarr-python's stores (``benchmarks/s3.py``, moto on 127.0.0.1, one core):

* ``ObjectStore`` (obstore 0.12.1) is as fast per request (a ranged GET of 100 kB in
  0.69-0.94x the time), but its client cannot be used in a forked child: a GET in a child
  of a process that had read through obstore never returns, even on a store made after the
  fork (the tokio runtime does not survive ``fork``; obstore documents itself as not fork
  safe). basf2's multiprocessing forks after the overlay opened its pool, as do torch's
  DataLoader workers, so ``tests/test_s3.py::test_pool_reads_in_a_forked_child`` would hang.
* ``FsspecStore`` on s3fs 2026.9 reads after a fork only through a store opened anew in the
  child, its ranged GET took 1.09x boto3's time, and its aiobotocore pins a botocore older
  than the one boto3 (and moto) need, so both cannot be installed together at current
  versions.

The chunk reads stay bgcache's either way: zarr's array API on ``ObjectStore`` read windows
of events at an eighth of this reader's rate.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from typing import Any

from bgcache.errors import MissingDependencyError, PoolObjectError, PoolWriteError, UsageError
from bgcache.store.storage import PROBE_PREFIX, State, is_transient


def _client() -> Any:
    """A boto3 S3 client for the current environment (one per process and configuration:
    clients are thread-safe and keep a connection pool)."""
    env = tuple(
        os.environ.get(name)
        for name in (
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
        )
    )
    return _cached_client(env)


@functools.cache
def _cached_client(env: tuple[str | None, ...]) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingDependencyError(
            "pools on S3 need boto3, which is not installed: pip install 'bgcache[s3]'"
        ) from None
    endpoint = env[0] or env[1]
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint or None, config=config)


class S3Storage:
    """A pool under ``s3://bucket/prefix``.

    Args:
        url: ``s3://bucket/prefix`` (the prefix may be empty: the bucket's root).

    Raises:
        UsageError: a malformed URL.
        MissingDependencyError: boto3 is not installed.
    """

    def __init__(self, url: str) -> None:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise UsageError(f"pool URL {url!r} names no bucket: expected s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._s3 = _client()
        from botocore.exceptions import BotoCoreError, ClientError

        # BotoCoreError: no connection to the endpoint, no credentials... (no response code)
        self._ClientError = (ClientError, BotoCoreError)

    # -- names -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``s3://bucket/prefix``."""
        return self._url

    def absolute_url(self) -> str:
        """The URL (already absolute)."""
        return self._url

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix and key else (key or self.prefix)

    def _code(self, exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _error(self, exc: Exception, key: str, doing: str) -> Exception:
        code = self._code(exc)
        where = f"pool '{self.url}'" + (f" ({key})" if key else "")
        if code in (
            "AccessDenied",
            "AllAccessDisabled",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ):
            return PoolWriteError(
                f"cannot {doing} {where}: access denied ({code}); check the credentials "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket's permissions"
            )
        if code == "NoSuchBucket":
            return PoolWriteError(
                f"cannot {doing} {where}: bucket {self.bucket!r} does not exist; create it first"
            )
        return PoolWriteError(f"cannot {doing} {where}: {code or type(exc).__name__}: {exc}")

    # -- reading ---------------------------------------------------------------------------
    def state(self) -> State:
        """``missing``, ``file`` (an object at the prefix itself) or ``dir`` (objects under it)."""
        files, dirs = self._list(self._key(""), delimiter="/", limit=20)
        if dirs or any(not is_transient(name) for name, _ in files):
            return "dir"
        if self.prefix and self.size("") is not None:  # an object at the prefix itself
            return "file"
        return "missing"

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The object ``key``, or None if it does not exist.

        Raises:
            PoolObjectError: it holds more than ``max_bytes`` (only ``max_bytes + 1`` are
                fetched to tell).
        """
        extra = {} if max_bytes is None else {"Range": f"bytes=0-{max_bytes}"}
        try:
            body: bytes = self._s3.get_object(Bucket=self.bucket, Key=self._key(key), **extra)[
                "Body"
            ].read()
        except self._ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            if self._code(exc) == "InvalidRange":  # a range of an empty object
                return b""
            raise self._error(exc, key, "read") from None
        if max_bytes is not None and len(body) > max_bytes:
            raise PoolObjectError(
                f"pool '{self.url}': '{key}' holds more than the {max_bytes:,} bytes its kind "
                "can (damaged or hostile pool): run 'bgcache verify'"
            )
        return body

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (negative: from the end).

        Raises:
            FileNotFoundError: the object does not exist.
        """
        if offset < 0 and offset + length == 0:
            byte_range = f"bytes={offset}"  # the last -offset bytes
        elif offset < 0:
            size = self.size(key)
            if size is None:
                raise FileNotFoundError(f"{self.url}/{key}")
            return self.read_range(key, size + offset, length)
        else:
            byte_range = f"bytes={offset}-{offset + length - 1}"
        try:
            data: bytes = self._s3.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=byte_range
            )["Body"].read()
        except self._ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{self.url}/{key}") from None
            raise self._error(exc, key, "read") from None
        return data

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata (HEAD), or None if it does not exist."""
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error(exc, key, "read") from None
        return head

    def size(self, key: str) -> int | None:
        """Size of the object ``key`` (None if missing)."""
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        """Whether the object ``key`` exists, or any object under ``key/``."""
        if self.size(key) is not None:
            return True
        files, dirs = self._list(self._key(key), delimiter="/", limit=1)
        return bool(files or dirs)

    def _list(
        self, prefix: str, *, delimiter: str | None, limit: int | None = None
    ) -> tuple[list[tuple[str, int]], list[str]]:
        """Objects ``(key, size)`` and common prefixes under ``prefix/``."""
        base = f"{prefix}/" if prefix else ""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if limit:
            kwargs["MaxKeys"] = limit
        files: list[tuple[str, int]] = []
        dirs: list[str] = []
        try:
            while True:
                page = self._s3.list_objects_v2(**kwargs)
                files += [(o["Key"][len(base) :], int(o["Size"])) for o in page.get("Contents", [])]
                dirs += [
                    p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                ]
                if limit or not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except self._ClientError as exc:
            raise self._error(exc, prefix, "list") from None
        return files, dirs

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (objects and "folders")."""
        files, dirs = self._list(self._key(prefix), delimiter="/")
        return sorted({name for name, _ in files} | set(dirs))

    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every object under ``prefix`` as ``(key, size)``, sorted."""
        files, _ = self._list(self._key(prefix), delimiter=None)
        lead = f"{prefix}/" if prefix else ""
        for name, size in sorted(files):
            yield lead + name, size

    # -- writing ---------------------------------------------------------------------------
    def write(self, key: str, data: bytes) -> None:
        """Write ``key`` in one PUT (atomic: readers see the old or the new object)."""
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except self._ClientError as exc:
            raise self._error(exc, key, "write to") from None

    def write_new(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists (conditional PUT); True if this call created it."""
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except self._ClientError as exc:
            if self._code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._error(exc, key, "write to") from None
        return True

    def sync_dir(self, key: str) -> None:
        """Nothing to do: a PUT that returned is durable."""

    def delete(self, key: str) -> None:
        """Remove the object ``key`` if it exists."""
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._ClientError as exc:
            raise self._error(exc, key, "delete from") from None

    def mtime(self, key: str) -> float | None:
        """When ``key`` was last written (seconds since the epoch), None if it is missing."""
        head = self._head(key)
        return None if head is None else float(head["LastModified"].timestamp())

    def prune(self, prefix: str) -> None:
        """Nothing to do: an object store has no directories."""

    def check_writable(self) -> None:
        """Raise :class:`PoolWriteError` now if the location cannot be written."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}.partial"
        self.write(probe, b"")
        self.delete(probe)

    def check_creatable(self) -> None:
        """The bucket must exist and accept writes."""
        self.check_writable()


__all__ = ["S3Storage"]
