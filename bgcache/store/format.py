"""The on-disk contract of a pool: names, version, layout and the JSON documents.

Everything that fixes how a pool looks in its store lives here (``docs/format.md``
describes the same in prose); :mod:`bgcache.store.pool` reads and writes through it.

A pool is one Zarr v3 group::

    POOL/zarr.json                         root group; attributes["bgcache"] = root record
    POOL/streams/zarr.json                 group of the seed streams
    POOL/streams/<sid>/zarr.json           one group per seed (sid: 16 hex digits of the
                                           seed as unsigned 64 bit); attributes: seed
    POOL/streams/<sid>/<name>/counts/...   one block = one group with three 1-d arrays:
    POOL/streams/<sid>/<name>/index/...      counts (uint32, hits per event), index
    POOL/streams/<sid>/<name>/charge/...     (uint32, pixel index delta-coded per event)
    POOL/streams/<sid>/<name>/zarr.json      and charge (uint8); the block's zarr.json is
                                             written LAST and is its completion marker

Block ``b`` of a stream holds the keys ``(seed, b*B) ... (seed, b*B + n - 1)`` where B is
the pool's ``block_events``; a full block (n = B) is named ``"<b>"``, a short one at the
end of a range ``"<b>~<n>"``. Complete blocks are never modified: extending a short block
writes the full one beside it, which supersedes it.

Example:
    >>> stream_name(-1), stream_name(5)
    ('ffffffffffffffff', '0000000000000005')
    >>> block_name(3, 256, 256), block_name(3, 10, 256)
    ('3', '3~10')
    >>> parse_block_name("3~10"), parse_block_name("7"), parse_block_name("x")
    ((3, 10), (7, None), None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from bgcache.errors import UsageError, did_you_mean

#: ``attributes["bgcache"]["format"]`` of every pool.
FORMAT_NAME = "bgcache-pool"
#: Version of this layout; readers refuse pools of a newer version.
FORMAT_VERSION = 1
#: Key of bgcache's record in the ``attributes`` of every node it writes.
ATTRS_KEY = "bgcache"
#: The group that holds the seed streams.
STREAMS = "streams"
#: Name of a node's metadata document (Zarr v3).
ZARR_JSON = "zarr.json"
#: Suffix of files being written (same as zarr-python's LocalStore): never data.
PARTIAL_SUFFIX = ".partial"
#: Names of the block columns, in the order they are written.
COLUMNS = ("counts", "index", "charge")
COLUMN_DTYPES: dict[str, np.dtype[Any]] = {
    "counts": np.dtype("<u4"),
    "index": np.dtype("<u4"),
    "charge": np.dtype("u1"),
}

#: Events per block of a new pool when none is given: synthetic and GPU builds.
DEFAULT_BLOCK_EVENTS = 256
#: Events per block of a new GAN pool built on a CPU (a block is the unit of resume).
DEFAULT_BLOCK_EVENTS_GAN_CPU = 16
#: Hits per inner chunk of the index and charge columns (about one event's hits).
DEFAULT_CHUNK_HITS = 65536
#: Largest accepted block size.
MAX_BLOCK_EVENTS = 65536
#: Largest accepted inner chunk of the index and charge columns (64 MiB of uint32).
MAX_CHUNK_HITS = 2**24
#: Blosc codecs and shuffles a pool's layout may name (what numcodecs' Blosc has).
BLOSC_CNAMES = ("blosclz", "lz4", "lz4hc", "zlib", "zstd")
SHUFFLES = ("noshuffle", "shuffle", "bitshuffle")
#: Codecs a new pool can be built or recompressed with (``--codec NAME[:LEVEL]``), each with
#: the level its name alone means: zstd-1, the default, is the smallest of those measured
#: and cheap to encode; lz4 and lz4hc decode 4-5x faster from 1.4-1.6x the bytes (lz4hc
#: encodes ~25x slower than lz4 for 12 % fewer bytes). docs/performance.md has the figures.
CODECS = {"zstd": 1, "lz4": 9, "lz4hc": 9}

_BLOCK_RE = re.compile(r"^(0|[1-9][0-9]*)(?:~([1-9][0-9]*))?$")


@dataclass(frozen=True)
class Compression:
    """The compressor of the index and charge chunks (Blosc, byte shuffle) + crc32c.

    The default (zstd level 1, byte shuffle) is the choice measured in
    ``docs/performance.md``: within a few percent of the best codec tried, and the fastest
    to encode of those within 10 %.
    """

    cname: str = "zstd"
    clevel: int = 1
    shuffle: str = "shuffle"

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of the compression (stored in the root record)."""
        return {
            "name": "blosc",
            "cname": self.cname,
            "clevel": self.clevel,
            "shuffle": self.shuffle,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Compression:
        """Inverse of :meth:`to_dict`, checked.

        Raises:
            ValueError: a codec name, level or shuffle that Blosc does not have.
        """
        cname, clevel, shuffle = data["cname"], data["clevel"], data["shuffle"]
        if cname not in BLOSC_CNAMES:
            raise ValueError(f"unknown blosc codec {str(cname)[:40]!r}")
        if type(clevel) is not int or not 0 <= clevel <= 9:
            raise ValueError(f"blosc level {str(clevel)[:40]} is not 0..9")
        if shuffle not in SHUFFLES:
            raise ValueError(f"unknown shuffle {str(shuffle)[:40]!r}")
        return cls(cname, clevel, shuffle)

    @property
    def codec(self) -> str:
        """The codec as ``--codec`` spells it: ``NAME:LEVEL`` (``zstd:1``)."""
        return f"{self.cname}:{self.clevel}"


def parse_codec(text: str | Compression) -> Compression:
    """The compression of ``--codec NAME[:LEVEL]``: NAME one of zstd, lz4, lz4hc, LEVEL 1..9
    (default: the level of :data:`CODECS`), byte shuffle.

    Raises:
        UsageError: another name, or a level that is not an integer in 1..9.

    Example:
        >>> parse_codec("lz4hc:5")
        Compression(cname='lz4hc', clevel=5, shuffle='shuffle')
        >>> parse_codec("zstd").codec
        'zstd:1'
        >>> parse_codec("zstd:0")
        Traceback (most recent call last):
        ...
        bgcache.errors.UsageError: codec 'zstd:0': the level must be an integer in 1..9 (e.g. zstd:1)
    """
    if isinstance(text, Compression):
        return text
    name, sep, level = str(text).strip().partition(":")
    name = name.lower()
    if name not in CODECS:
        raise UsageError(
            f"codec {str(text)[:40]!r} is not one of {', '.join(CODECS)} (NAME or NAME:LEVEL, "
            f"e.g. lz4 or zstd:1){did_you_mean(name, tuple(CODECS))}"
        )
    if not sep:
        return Compression(name, CODECS[name])
    if not (level.isascii() and level.isdigit() and 1 <= int(level) <= 9):
        raise UsageError(
            f"codec {str(text)[:40]!r}: the level must be an integer in 1..9 (e.g. {name}:{CODECS[name]})"
        )
    return Compression(name, int(level))


@dataclass(frozen=True)
class Layout:
    """How a pool stores events; fixed when the pool is created.

    Attributes:
        block_events: events per block (the unit of writing, resume and reading).
        chunk_hits: values per inner chunk of the index and charge columns.
        compression: compressor of the chunks.
    """

    block_events: int = DEFAULT_BLOCK_EVENTS
    chunk_hits: int = DEFAULT_CHUNK_HITS
    compression: Compression = Compression()

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of the layout (stored in the root record)."""
        return {
            "block_events": self.block_events,
            "chunk_hits": self.chunk_hits,
            "compression": self.compression.to_dict(),
            "checksum": "crc32c",
            "columns": {
                "counts": "uint32, hits per event (one chunk per block)",
                "index": (
                    "uint32, packed pixel index sensor*192000 + u*768 + v, sorted within an "
                    "event and delta-coded within the event (first value absolute)"
                ),
                "charge": "uint8, ADU (1..255), in the order of the index column",
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        """Inverse of :meth:`to_dict`, checked: a hostile layout must not make a reader
        divide by zero, loop without end or size buffers beyond these bounds.

        Raises:
            ValueError: a size that is not an integer in its range, or an unknown codec.
        """
        block_events, chunk_hits = data["block_events"], data["chunk_hits"]
        if type(block_events) is not int or not 1 <= block_events <= MAX_BLOCK_EVENTS:
            raise ValueError(f"block_events {str(block_events)[:40]} is not 1..{MAX_BLOCK_EVENTS}")
        if type(chunk_hits) is not int or not 1 <= chunk_hits <= MAX_CHUNK_HITS:
            raise ValueError(f"chunk_hits {str(chunk_hits)[:40]} is not 1..{MAX_CHUNK_HITS}")
        return cls(block_events, chunk_hits, Compression.from_dict(data["compression"]))


def stream_name(seed: int) -> str:
    """The group name of a seed stream: the seed as 16 hex digits of its uint64 bits."""
    return f"{seed & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def seed_of_stream(name: str) -> int | None:
    """The seed of a stream group name, or None if ``name`` is not one."""
    if len(name) != 16 or not all(c in "0123456789abcdef" for c in name):
        return None
    value = int(name, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def block_name(block: int, n_events: int, block_events: int) -> str:
    """The group name of block ``block`` holding ``n_events`` events."""
    return str(block) if n_events == block_events else f"{block}~{n_events}"


def parse_block_name(name: str) -> tuple[int, int | None] | None:
    """``(block, n_events)`` of a short block name, ``(block, None)`` of a full one, else None."""
    m = _BLOCK_RE.match(name)
    if m is None:
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


def stream_path(seed: int) -> str:
    """Store key prefix of a stream group."""
    return f"{STREAMS}/{stream_name(seed)}"


def block_path(seed: int, name: str) -> str:
    """Store key prefix of a block group."""
    return f"{stream_path(seed)}/{name}"


#: Key of the streams group's metadata document.
STREAMS_DOCUMENT = f"{STREAMS}/{ZARR_JSON}"


def stream_document_key(seed: int) -> str:
    """Key of a stream group's metadata document."""
    return f"{stream_path(seed)}/{ZARR_JSON}"


def marker_key(path: str) -> str:
    """Key of the block marker (the block group's ``zarr.json``) of the block at ``path``."""
    return f"{path}/{ZARR_JSON}"


def column_key(path: str, column: str) -> str:
    """Key of a block column's data: its one chunk (counts) or its one shard (index, charge).

    Example:
        >>> column_key("streams/0000000000000005/3", "index")
        'streams/0000000000000005/3/index/c/0'
    """
    return f"{path}/{column}/c/0"


def column_document_key(path: str, column: str) -> str:
    """Key of a block column's array metadata document."""
    return f"{path}/{column}/{ZARR_JSON}"


def group_document(attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``zarr.json`` of a group with bgcache's record in its attributes."""
    return {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {ATTRS_KEY: attributes} if attributes is not None else {},
    }


def array_document(
    column: str, n_values: int, chunk: int, compression: Compression, *, sharded: bool
) -> dict[str, Any]:
    """The ``zarr.json`` of a block column, exactly as zarr-python 3 writes it.

    ``sharded``: the column is one shard (one file, ``c/0``) of inner chunks of ``chunk``
    values, each compressed and crc32c-checksummed; otherwise one plain chunk.
    """
    dtype = COLUMN_DTYPES[column]
    inner: list[dict[str, Any]] = [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {
            "name": "blosc",
            "configuration": {
                "typesize": dtype.itemsize,
                "cname": compression.cname,
                "clevel": compression.clevel,
                "shuffle": compression.shuffle,
                "blocksize": 0,
            },
        },
        {"name": "crc32c"},
    ]
    n_chunks = max(1, -(-n_values // chunk))
    if sharded:
        codecs: list[dict[str, Any]] = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [chunk],
                    "codecs": inner,
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ]
        grid = n_chunks * chunk
    else:
        codecs, grid = inner, chunk
    return {
        "shape": [n_values],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [grid]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


__all__ = [
    "ATTRS_KEY",
    "CODECS",
    "COLUMNS",
    "COLUMN_DTYPES",
    "DEFAULT_BLOCK_EVENTS",
    "DEFAULT_BLOCK_EVENTS_GAN_CPU",
    "DEFAULT_CHUNK_HITS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_BLOCK_EVENTS",
    "PARTIAL_SUFFIX",
    "STREAMS",
    "STREAMS_DOCUMENT",
    "ZARR_JSON",
    "Compression",
    "Layout",
    "array_document",
    "block_name",
    "block_path",
    "column_document_key",
    "column_key",
    "group_document",
    "marker_key",
    "parse_block_name",
    "parse_codec",
    "seed_of_stream",
    "stream_document_key",
    "stream_name",
    "stream_path",
]
