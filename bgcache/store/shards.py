"""Chunk and shard bytes of the block columns, as Zarr v3 stores them (numpy + numcodecs).

A block column is either one plain chunk (``counts``) or one shard of inner chunks
(``index`` and ``charge``). Each chunk is ``crc32c(blosc(little-endian bytes))``: the
Blosc frame followed by the 4-byte little-endian crc32c of it, which is exactly zarr's
codec chain ``bytes -> blosc -> crc32c``. A shard is its inner chunks back to back
followed by the shard index (``n_chunks`` pairs of little-endian uint64 offset and
length, then its own crc32c), zarr's ``sharding_indexed`` with ``index_location="end"``.

Why bgcache writes and reads these bytes itself rather than through zarr-python's array
API (measured by ``benchmarks/pool.py --parts zarr`` and ``benchmarks/s3.py``, one core, the
same events, see ``docs/performance.md``): zarr-python 3.1.6 took 1.6-2.2x the time to write
a block, 1.6-2.1x to read the pool block by block, 3.5x for one random event, and gave an
eighth of the rate for windows of 16 events from S3, where it fetches each inner chunk and
the shard index separately; here the chunks a window spans are fetched with one ranged read
and shard indexes are cached. The bytes are zarr's: ``tests/test_pool.py`` checks that
zarr-python reads every column back unchanged, and the benchmark that zarr-python writes
the same bytes for the same block.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import google_crc32c
import numpy as np
from numcodecs import Blosc

from bgcache.errors import CorruptBlockError, PoolWriteError, StorageServerError
from bgcache.store.format import Compression

_SHUFFLE = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
_EMPTY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)

#: ``read(offset, length)`` of one stored object (negative offset: from the end).
RangeReader = Callable[[int, int], bytes]
#: A read's failures that are the storage server's, not the block's: a server that does not
#: answer, fails, or answers what was not asked. They reach the caller as they are (a
#: reader that skips damaged blocks must not skip the blocks of a server that is down).
_SERVER_TROUBLE = (PoolWriteError, StorageServerError)
_NOT_DAMAGE = (CorruptBlockError, *_SERVER_TROUBLE)


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """crc32c of a byte buffer.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    if isinstance(data, memoryview):
        data = np.frombuffer(data, dtype=np.uint8)  # read-only view: no copy
    return int(google_crc32c.value(data))


def _blosc(compression: Compression, itemsize: int) -> Blosc:
    return Blosc(
        cname=compression.cname,
        clevel=compression.clevel,
        shuffle=_SHUFFLE[compression.shuffle] if itemsize > 1 else Blosc.NOSHUFFLE,
    )


def encode_chunk(values: np.ndarray, chunk: int, compression: Compression) -> bytes:
    """One chunk of ``chunk`` values (zero-padded like zarr's edge chunks), checksummed."""
    if values.shape[0] < chunk:
        padded = np.zeros(chunk, dtype=values.dtype)
        padded[: values.shape[0]] = values
        values = padded
    frame = bytes(_blosc(compression, values.dtype.itemsize).encode(np.ascontiguousarray(values)))
    return frame + np.uint32(crc32c(frame)).tobytes()


_DECODER = Blosc()


def decode_chunk(
    data: bytes | memoryview, dtype: np.dtype, where: str, out: np.ndarray | None = None
) -> np.ndarray:
    """Values of one chunk after checking its crc32c (``where`` names it in errors).

    Args:
        out: a contiguous array of the chunk's size to decode into (no allocation).
    """
    if len(data) < _BLOSC_HEADER + 4:
        raise CorruptBlockError(f"{where}: chunk of {len(data)} bytes is truncated")
    view = memoryview(data)
    frame, stored = view[:-4], int.from_bytes(view[-4:], "little")
    if crc32c(frame) != stored:
        raise CorruptBlockError(f"{where}: crc32c checksum mismatch (damaged chunk)")
    # the Blosc header says how many bytes the frame inflates to (bytes 4..8) and how long
    # it is (12..16): check both before inflating, so a bomb is refused unopened
    declared, length = (int.from_bytes(frame[i : i + 4], "little") for i in (4, 12))
    if length != len(frame) or (out is not None and declared != out.nbytes):
        expected = f", its chunk holds {out.nbytes:,}" if out is not None else ""
        raise CorruptBlockError(
            f"{where}: chunk frame declares {declared:,} bytes in {length:,}{expected} "
            "(damaged or hostile chunk)"
        )
    try:
        if out is not None:
            _DECODER.decode(frame, out=out)
            return out
        raw = _DECODER.decode(frame)
    except Exception as exc:  # numcodecs raises RuntimeError/ValueError on bad frames
        raise CorruptBlockError(f"{where}: cannot decompress chunk ({exc})") from None
    return np.frombuffer(raw, dtype=dtype)


def encode_shard(values: np.ndarray, chunk: int, compression: Compression) -> bytes:
    """A shard holding ``values`` in inner chunks of ``chunk`` values (empty: no chunks)."""
    n_chunks = max(1, -(-values.shape[0] // chunk))
    parts: list[bytes] = []
    index = np.full((n_chunks, 2), _EMPTY, dtype="<u8")
    offset = 0
    for i in range(n_chunks):
        part = values[i * chunk : (i + 1) * chunk]
        if part.shape[0] == 0:
            continue
        data = encode_chunk(part, chunk, compression)
        index[i] = (offset, len(data))
        parts.append(data)
        offset += len(data)
    raw_index = index.tobytes()
    parts.append(raw_index + np.uint32(crc32c(raw_index)).tobytes())
    return b"".join(parts)


#: Bytes of a Blosc (v1) frame's header; also the most a frame adds to the bytes it holds.
_BLOSC_HEADER = 16


def chunk_nbytes_bound(values: np.ndarray) -> int:
    """The most bytes a stored chunk of ``values``' size can have (frame and checksum)."""
    return values.nbytes + _BLOSC_HEADER + 4


def shard_nbytes_bound(n_values: int, chunk: int, dtype: np.dtype) -> int:
    """The most bytes a shard of ``n_values`` values in chunks of ``chunk`` can have: what
    a reader may read whole before it has checked anything.

    Example:
        >>> shard_nbytes_bound(100, 64, np.dtype("<u4"))
        588
    """
    n_chunks = max(1, -(-n_values // chunk))
    return n_chunks * (chunk * dtype.itemsize + _BLOSC_HEADER + 4) + shard_index_nbytes(
        n_values, chunk
    )


def shard_index_nbytes(n_values: int, chunk: int) -> int:
    """Bytes of the index at the end of a shard of ``n_values`` values."""
    return max(1, -(-n_values // chunk)) * 16 + 4


def _parse_index(data: bytes | memoryview, n_chunks: int, where: str) -> np.ndarray:
    view = memoryview(data)
    if len(view) != n_chunks * 16 + 4:
        raise CorruptBlockError(
            f"{where}: shard index has {len(view)} bytes, expected {n_chunks * 16 + 4}"
        )
    raw, stored = view[:-4], int.from_bytes(view[-4:], "little")
    if crc32c(raw) != stored:
        raise CorruptBlockError(f"{where}: crc32c checksum mismatch in the shard index")
    return np.frombuffer(raw, dtype="<u8").reshape(n_chunks, 2)


def decode_shard(data: bytes, n_values: int, chunk: int, dtype: np.dtype, where: str) -> np.ndarray:
    """All ``n_values`` values of a shard, every chunk checked."""
    return read_shard_range(_bytes_reader(data), n_values, chunk, dtype, 0, n_values, where)


def _bytes_reader(data: bytes) -> RangeReader:
    view = memoryview(data)
    size = len(view)

    def read(offset: int, length: int) -> bytes:
        start = offset if offset >= 0 else size + offset
        if start < 0 or start + length > size:
            raise CorruptBlockError(f"read of {length} bytes at {offset} beyond the {size} stored")
        return view[start : start + length]  # type: ignore[return-value]

    return read


def read_shard_index(read: RangeReader, n_values: int, chunk: int, where: str) -> np.ndarray:
    """The parsed index of a shard: ``(n_chunks, 2)`` uint64 offsets and lengths.

    Raises:
        CorruptBlockError: it cannot be read, or its checksum fails.
    """
    n_chunks = max(1, -(-n_values // chunk))
    try:
        return _parse_index(read(-(n_chunks * 16 + 4), n_chunks * 16 + 4), n_chunks, where)
    except _NOT_DAMAGE:
        raise
    except Exception as exc:
        raise CorruptBlockError(f"{where}: cannot read the shard index ({exc})") from None


def read_shard_range(
    read: RangeReader,
    n_values: int,
    chunk: int,
    dtype: np.dtype,
    start: int,
    stop: int,
    where: str,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """Values ``start:stop`` of a shard, fetching only the index and the chunks they span.

    The chunks a range spans lie back to back in the shard (they are written in order), so
    they are fetched with one read (one GET on an object store) and decoded one by one.

    Args:
        read: ``read(offset, length)`` of the shard object (negative offset: from its end).
        n_values: values in the column; chunk: values per inner chunk.
        dtype: the column's dtype; where: names the column in errors.
        index: the shard's parsed index, if the caller has it (:func:`read_shard_index`).

    Raises:
        CorruptBlockError: a checksum, length or frame is damaged, or a needed chunk is missing.
    """
    if stop <= start:
        return np.zeros(0, dtype=dtype)
    if index is None:
        index = read_shard_index(read, n_values, chunk, where)
    first, last = start // chunk, (stop - 1) // chunk
    entries = [(int(o), int(n)) for o, n in index[first : last + 1]]
    for c, (offset, _) in enumerate(entries, start=first):
        if offset == int(_EMPTY):
            raise CorruptBlockError(f"{where}: inner chunk {c} is missing from the shard")
    begin = entries[0][0]
    end = entries[-1][0] + entries[-1][1]
    contiguous = all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(entries))
    span: bytes | memoryview | None = None
    if contiguous and end > begin:
        try:
            span = memoryview(read(begin, end - begin))
        except _SERVER_TROUBLE:
            raise
        except Exception as exc:
            raise CorruptBlockError(
                f"{where}: cannot read inner chunks {first}..{last} ({exc})"
            ) from None
    # decode whole chunks straight into one buffer, then hand out the requested slice
    buf = np.empty((last - first + 1) * chunk, dtype=dtype)
    for c, (offset, length) in enumerate(entries, start=first):
        if span is not None:
            data = span[offset - begin : offset - begin + length]
        else:
            try:
                data = read(offset, length)
            except _SERVER_TROUBLE:
                raise
            except Exception as exc:
                raise CorruptBlockError(f"{where}: cannot read inner chunk {c} ({exc})") from None
        if len(data) != length:
            raise CorruptBlockError(f"{where}: inner chunk {c} is truncated")
        part = buf[(c - first) * chunk : (c - first + 1) * chunk]
        try:
            decode_chunk(data, dtype, f"{where} chunk {c}", out=part)
        except CorruptBlockError:
            raise
        except Exception as exc:  # a frame that decodes to another size
            raise CorruptBlockError(f"{where} chunk {c}: cannot decompress ({exc})") from None
    return buf[start - first * chunk : stop - first * chunk]


__all__ = [
    "RangeReader",
    "chunk_nbytes_bound",
    "crc32c",
    "decode_chunk",
    "decode_shard",
    "encode_chunk",
    "encode_shard",
    "read_shard_index",
    "read_shard_range",
    "shard_index_nbytes",
    "shard_nbytes_bound",
]
