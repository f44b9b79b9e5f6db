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

Answers are read under the limits of :mod:`bgcache.store.remote_limits`: a body is streamed
(``StreamingBody.read`` of 64 KiB at a time) and never held beyond its cap (a whole object's
read asks the range of its cap + 1 byte; an answer longer than asked is refused); a request
has the deadline ``$BGCACHE_REMOTE_TIMEOUT`` (60 s): botocore's connect and read timeouts
bound each wait on a socket, the body is given up once the deadline has passed, and no
failed attempt is tried again after it (botocore's retries, up to 5 attempts, stop there).
botocore reads a listing page whole (bgcache asks 1,000 keys a page, and refuses a page
with more); a directory's listing stops at ``MAX_LISTING_ENTRIES`` names and a walk of the
pool at ``MAX_WALK_OBJECTS`` objects.

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
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from bgcache.errors import MissingDependencyError, PoolWriteError, StorageServerError, UsageError
from bgcache.store.remote_limits import (
    CHUNK_BYTES,
    MAX_LISTING_ENTRIES,
    MAX_WALK_OBJECTS,
    Deadline,
    collect,
    content_range,
    more_than_asked,
    remote_timeout,
    too_big,
    too_many_entries,
    too_slow,
)
from bgcache.store.storage import PROBE_PREFIX, State, is_transient

#: Keys one listing request asks for (S3's own maximum).
PAGE_KEYS = 1000
#: The deadline of the request under way in this thread, and what it reads (for the retry
#: veto, which botocore calls without them).
_local = threading.local()


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
    return _cached_client(env, remote_timeout())


@functools.cache
def _cached_client(env: tuple[str | None, ...], timeout: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingDependencyError(
            "pools on S3 need boto3, which is not installed: pip install 'bgcache[s3]'"
        ) from None
    endpoint = env[0] or env[1]
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
    )
    client = boto3.client("s3", endpoint_url=endpoint or None, config=config)
    client.meta.events.register_first("needs-retry.s3", _no_retry_after_the_deadline)
    return client


def _no_retry_after_the_deadline(**kwargs: Any) -> None:
    """botocore's ``needs-retry`` hook: once the request's deadline has passed, a failed
    attempt ends the request instead of being tried again."""
    request: tuple[Deadline, str, str, str] | None = getattr(_local, "request", None)
    if request is not None and request[0].expired():
        _, url, key, doing = request
        raise too_slow(url, key, request[0].seconds, doing)


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
        self._timeout = remote_timeout()
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
                asked for, and an answer is refused as soon as it passes them).
        """
        extra = {} if max_bytes is None else {"Range": f"bytes=0-{max_bytes}"}
        try:
            body = self._get(key, extra, "read", max_bytes)
        except FileNotFoundError:
            return None
        if max_bytes is not None and len(body) > max_bytes:
            raise too_big(self.url, key, None, max_bytes)
        return body

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (negative: from the end).

        Raises:
            FileNotFoundError: the object does not exist.
            StorageServerError: the server sent more than asked.
        """
        if length <= 0:
            return b""
        if offset < 0 and offset + length == 0:
            byte_range = f"bytes={offset}"  # the last -offset bytes
        elif offset < 0:
            size = self.size(key)
            if size is None:
                raise FileNotFoundError(f"{self.url}/{key}")
            return self.read_range(key, max(size + offset, 0), length)
        else:
            byte_range = f"bytes={offset}-{offset + length - 1}"
        return self._get(key, {"Range": byte_range}, "read", None, asked=length)

    def _get(
        self,
        key: str,
        extra: dict[str, str],
        doing: str,
        cap: int | None,
        asked: int | None = None,
    ) -> bytes:
        """The body of one GET, streamed: at most ``cap + 1`` bytes of a whole object's read
        (more: too big), at most ``asked`` of a ranged one (more: refused), within the
        deadline.

        Raises:
            FileNotFoundError: no such object (an empty object's range: b"").
        """
        deadline = Deadline(self._timeout)
        _local.request = (deadline, self.url, key, doing)
        try:
            try:
                answer = self._s3.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
            except self._ClientError as exc:
                if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                    raise FileNotFoundError(f"{self.url}/{key}") from None
                if self._code(exc) == "InvalidRange":  # a range of an empty object
                    return b""
                raise self._error(exc, key, doing) from None
            body = answer["Body"]
            try:
                first, total = content_range(str(answer.get("ContentRange") or ""))
                declared = int(answer.get("ContentLength") or 0)
                limit: int | None
                if cap is not None:
                    size = total if total is not None else (declared if first is None else None)
                    if size is not None and size > cap:
                        raise too_big(self.url, key, size, cap)
                    limit = cap + 1

                    def over() -> Exception:
                        return too_big(self.url, key, None, cap or 0)
                else:
                    limit = asked

                    def over() -> Exception:
                        return more_than_asked(self.url, key, asked or 0, whole=first is None)

                if limit is not None and declared > limit:
                    raise over()
                return collect(
                    iter(lambda: body.read(CHUNK_BYTES), b""),
                    limit,
                    deadline,
                    over=over,
                    late=lambda: too_slow(self.url, key, self._timeout, doing),
                )
            except self._ClientError as exc:  # the body cut short, a read timeout
                if deadline.expired():
                    raise too_slow(self.url, key, self._timeout, doing) from None
                raise self._error(exc, key, doing) from None
            finally:
                body.close()
        finally:
            _local.request = None

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata (HEAD), or None if it does not exist."""
        _local.request = (Deadline(self._timeout), self.url, key, "read")
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error(exc, key, "read") from None
        finally:
            _local.request = None
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

    def _pages(self, prefix: str, *, delimiter: str | None, limit: int | None) -> Iterator[Any]:
        """The listing pages of objects (and, with a delimiter, common prefixes) under
        ``prefix/``, each checked to hold no more keys than asked."""
        base = f"{prefix}/" if prefix else ""
        per_page = min(limit or PAGE_KEYS, PAGE_KEYS)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base, "MaxKeys": per_page}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            deadline = Deadline(self._timeout)
            _local.request = (deadline, self.url, prefix, "list")
            try:
                page = self._s3.list_objects_v2(**kwargs)
            except self._ClientError as exc:
                raise self._error(exc, prefix, "list") from None
            finally:
                _local.request = None
            held = len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
            if held > per_page:
                raise StorageServerError(
                    f"cannot list pool '{self.url}' ({prefix or '/'}): the server's listing "
                    f"page holds {held:,} keys, more than the {per_page:,} asked: a "
                    "misbehaving server"
                )
            yield base, page
            token = page.get("NextContinuationToken")
            if limit or not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    def _list(
        self, prefix: str, *, delimiter: str | None, limit: int | None = None
    ) -> tuple[list[tuple[str, int]], list[str]]:
        """Objects ``(key, size)`` and common prefixes directly under ``prefix/``.

        Raises:
            StorageServerError: more than :data:`MAX_LISTING_ENTRIES` of them.
        """
        files: list[tuple[str, int]] = []
        dirs: list[str] = []
        for base, page in self._pages(prefix, delimiter=delimiter, limit=limit):
            files += [(o["Key"][len(base) :], int(o["Size"])) for o in page.get("Contents", [])]
            dirs += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            if len(files) + len(dirs) > MAX_LISTING_ENTRIES:
                raise too_many_entries(self.url, prefix)
        return files, dirs

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (objects and "folders")."""
        files, dirs = self._list(self._key(prefix), delimiter="/")
        return sorted({name for name, _ in files} | set(dirs))

    def walk(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every object under ``prefix`` as ``(key, size)``, in sorted order (the order S3
        lists keys in: by their UTF-8 bytes, which is Python's order of the names), a page at
        a time.

        Raises:
            StorageServerError: more than :data:`MAX_WALK_OBJECTS` objects.
        """
        lead = f"{prefix}/" if prefix else ""
        seen = 0
        for base, page in self._pages(self._key(prefix), delimiter=None, limit=None):
            for entry in page.get("Contents", []):
                seen += 1
                if seen > MAX_WALK_OBJECTS:
                    raise StorageServerError(
                        f"cannot list pool '{self.url}': the server lists more than "
                        f"{MAX_WALK_OBJECTS:,} objects (MAX_WALK_OBJECTS), more than a pool "
                        "holds: a misbehaving server, or a prefix that is no pool's"
                    )
                yield lead + str(entry["Key"])[len(base) :], int(entry["Size"])

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
