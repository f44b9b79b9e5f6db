"""The limits every answer of a remote storage server is read under (WebDAV, XRootD, S3).

A storage server's answers are untrusted input as much as a pool's bytes are (DESIGN 4):
they are read under the same caps as a local file, and in bounded time. This module is the
one rule the three remote backends share (:mod:`~bgcache.store.webdav`,
:mod:`~bgcache.store.xrootd`, :mod:`~bgcache.store.s3`):

* **Caps.** A body is streamed and never more than the caller's cap for its kind of object
  is held (``max_bytes``: :data:`~bgcache.store.records.MAX_DOCUMENT_BYTES` for a document,
  the layout's bound for a chunk or shard): a larger one is refused as soon as it passes
  the cap, or before a byte of it is read where the server announces its size. A ranged
  read holds at most the bytes it asked for, and a server that sends more (it ignored the
  range and sent the whole object) is refused (:func:`collect`).
* **Deadline.** A request, from connecting to the last byte of its answer (redirects
  included), ends within ``$BGCACHE_REMOTE_TIMEOUT`` seconds (:data:`DEFAULT_TIMEOUT`):
  an overall deadline, not an idle timeout, so a server that drips its answer a byte at a
  time, or announces more than it sends and keeps the connection open, ends in bounded
  time (:class:`Deadline`; how each protocol keeps it is said in its module).
* **Listings.** One directory's listing holds at most :data:`MAX_LISTING_ENTRIES` entries
  and (WebDAV, where it is XML) :data:`MAX_LISTING_BYTES` bytes; a walk goes at most
  :data:`MAX_WALK_DEPTH` directories deep (an object store's flat walk: at most
  :data:`MAX_WALK_OBJECTS` objects).
* **Redirects** (WebDAV): at most :data:`MAX_REDIRECTS` per request.

A server that breaks a limit gets a :class:`~bgcache.errors.StorageServerError` naming the
object, the server and the limit; an object larger than its kind is a
:class:`~bgcache.errors.PoolObjectError`, as on a local disk.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable

from bgcache.errors import PoolObjectError, StorageServerError, UsageError

#: Seconds one request to a storage server may take, connection to last byte
#: (``$BGCACHE_REMOTE_TIMEOUT`` overrides it).
DEFAULT_TIMEOUT = 60.0
#: The largest ``$BGCACHE_REMOTE_TIMEOUT`` accepted (a day).
MAX_TIMEOUT = 86_400.0
#: Entries one directory listing may hold. A pool directory holds about one entry per block
#: (a stream: its blocks; the others a handful), so this is 25.6 million events per stream
#: in blocks of 256; a listing that long is no pool's.
MAX_LISTING_ENTRIES = 100_000
#: Bytes of one WebDAV listing (its XML): ~1.3 KiB per entry at :data:`MAX_LISTING_ENTRIES`;
#: a server's listing measured ~350 bytes per entry.
MAX_LISTING_BYTES = 128 * 2**20
#: Directories a walk of a pool descends (a pool's deepest object is 6 deep:
#: ``streams/<stream>/<block>/<column>/c/0``).
MAX_WALK_DEPTH = 16
#: Objects a flat walk of an object store's pool lists (seven objects per block).
MAX_WALK_OBJECTS = 8 * MAX_LISTING_ENTRIES
#: Redirects one WebDAV request follows (a grid door redirects a read once, to a pool node).
MAX_REDIRECTS = 5
#: Bytes one read of a streamed body takes at a time.
CHUNK_BYTES = 1 << 16

_CONTENT_RANGE = re.compile(r"bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)$")


def remote_timeout() -> float:
    """The deadline of one request in seconds: ``$BGCACHE_REMOTE_TIMEOUT``, default 60.

    Raises:
        UsageError: the variable is not a number of seconds in (0, 86400].
    """
    text = os.environ.get("BGCACHE_REMOTE_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:  # NaN and infinities too
        raise UsageError(
            f"BGCACHE_REMOTE_TIMEOUT={text[:40]!r} is not a number of seconds in "
            f"(0, {MAX_TIMEOUT:.0f}]: set it to the seconds one request to a storage server "
            f"may take (default {DEFAULT_TIMEOUT:.0f}), or unset it"
        )
    return value


class Deadline:
    """The moment one request must be done by (``time.monotonic``).

    Example:
        >>> d = Deadline(60.0)
        >>> 59 < d.remaining() <= 60, d.expired()
        (True, False)
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.remaining() <= 0


def collect(
    chunks: Iterable[bytes],
    limit: int | None,
    deadline: Deadline,
    *,
    over: Callable[[], Exception],
    late: Callable[[], Exception],
) -> bytes:
    """The bytes of a streamed body, holding at most ``limit`` of them.

    Args:
        chunks: the body, a piece at a time (each at most :data:`CHUNK_BYTES` or so).
        limit: the most bytes the body may have (None: any number).
        deadline: the request's; checked after every piece.
        over: the error for a body longer than ``limit``, raised before its piece is kept.
        late: the error for a body not complete by the deadline.

    Example:
        >>> d = Deadline(60.0)
        >>> collect([b"ab", b"c"], 3, d, over=ValueError, late=TimeoutError)
        b'abc'
        >>> collect([b"ab", b"cd"], 3, d, over=ValueError, late=TimeoutError)
        Traceback (most recent call last):
        ValueError
    """
    parts: list[bytes] = []
    held = 0
    for chunk in chunks:
        if limit is not None and held + len(chunk) > limit:
            raise over()
        if deadline.expired():
            raise late()
        parts.append(chunk)
        held += len(chunk)
    return b"".join(parts)


def content_range(text: str) -> tuple[int | None, int | None]:
    """``(first byte, whole size)`` of an HTTP ``Content-Range`` (WebDAV's header, S3's
    ``ContentRange``); None where it is missing, malformed or ``*``.

    Example:
        >>> content_range("bytes 0-99/5000"), content_range("bytes 5-9/*"), content_range("")
        ((0, 5000), (5, None), (None, None))
    """
    found = _CONTENT_RANGE.match(text.strip())
    if found is None:
        return None, None
    total = found.group(3)
    return int(found.group(1)), None if total == "*" else int(total)


def where(url: str, key: str) -> str:
    """How an error names an object: ``pool 'URL' (key)``."""
    return f"pool '{url}'" + (f" ({key})" if key else "")


def too_big(url: str, key: str, size: int | None, max_bytes: int) -> PoolObjectError:
    """The error for an object larger than its kind can be: ``size`` the server said it
    holds, or None where it announced no size and sent more than ``max_bytes``."""
    if size is None:
        return PoolObjectError(
            f"pool '{url}': '{key}' holds more than the {max_bytes:,} bytes its kind can "
            "(the server sent more without announcing a size: a damaged or hostile pool, or "
            "a misbehaving server)"
        )
    return PoolObjectError(
        f"pool '{url}': '{key}' holds {size:,} bytes, more than the {max_bytes:,} its kind "
        "can (damaged or hostile pool): run 'bgcache verify'"
    )


def more_than_asked(url: str, key: str, asked: int, *, whole: bool) -> StorageServerError:
    """The error for a ranged read answered with more bytes than asked (``whole``: the
    server ignored the range and sent the object from its start, HTTP 200)."""
    how = " (it ignored the byte range and sent the whole object)" if whole else ""
    return StorageServerError(
        f"cannot read {where(url, key)}: the server sent more than the {asked:,} bytes "
        f"asked{how}: a misbehaving server; bgcache reads pools in byte ranges"
    )


def too_slow(url: str, key: str, seconds: float, doing: str = "read") -> StorageServerError:
    """The error for an answer not complete within the request's deadline."""
    return StorageServerError(
        f"cannot {doing} {where(url, key)}: the server's answer was not complete within "
        f"the {seconds:g} s deadline of a request (a stalled or dripping server); on a slow "
        "link raise $BGCACHE_REMOTE_TIMEOUT"
    )


def too_many_entries(url: str, key: str, count: int | None = None) -> StorageServerError:
    """The error for a listing of more than :data:`MAX_LISTING_ENTRIES` entries (``count``:
    how many, where the whole listing was read)."""
    held = (
        f"{count:,} entries, more than the {MAX_LISTING_ENTRIES:,}"
        if count
        else (f"more than the {MAX_LISTING_ENTRIES:,} entries")
    )
    return StorageServerError(
        f"cannot list {where(url, key)}: the server's listing holds {held} a pool directory "
        "can (MAX_LISTING_ENTRIES): a misbehaving server, or a directory that is no pool's"
    )


__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_LISTING_BYTES",
    "MAX_LISTING_ENTRIES",
    "MAX_REDIRECTS",
    "MAX_TIMEOUT",
    "MAX_WALK_DEPTH",
    "MAX_WALK_OBJECTS",
    "Deadline",
    "collect",
    "content_range",
    "more_than_asked",
    "remote_timeout",
    "too_big",
    "too_many_entries",
    "too_slow",
    "where",
]
