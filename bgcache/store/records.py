"""bgcache's records in a pool's metadata documents: the root record and the block markers.

Below :mod:`bgcache.store.pool`. Every node bgcache writes carries its record in
``attributes["bgcache"]`` of its ``zarr.json``: the root record (keys listed in
``docs/format.md``), the stream groups' (the seed) and the block markers (n_events, n_hits,
nbytes, writer...). This module is the one place that turns those documents into records
and back (:func:`node_document`, :func:`node_record`, :func:`parse_block_marker`), reads
and checks the root record, and says what a record holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bgcache._version import __version__
from bgcache.errors import CorruptBlockError, NotAPoolError, PoolFormatError, PoolNotFoundError
from bgcache.geometry import N_SENSORS, PIXELS_PER_SENSOR
from bgcache.store.format import (
    ATTRS_KEY,
    FORMAT_NAME,
    FORMAT_VERSION,
    ZARR_JSON,
    Layout,
    group_document,
)
from bgcache.store.storage import Storage

#: Content keys whose values must agree between a pool and a build that appends to it.
CONTENT_KEYS = (
    "model",
    "architecture",
    "latent_dim",
    "checkpoint_sha256",
    "precision",
    "device_type",
    "device_class",  # reduced precisions only: the kernel family their pixels depend on
    "optimize",
    "hit_threshold",
    "batch_events",  # GAN models on a CUDA device only: events per forward pass
)

#: The content record's ``model`` of a pool of imported events (``bgcache import``): real
#: background from ROOT files, which no generator can make more of.
IMPORTED_MODEL = "imported"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_bytes(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def node_document(record: Mapping[str, Any] | None = None) -> bytes:
    """The ``zarr.json`` bytes of a group node carrying ``record`` (root, stream, marker)."""
    return json_bytes(group_document(dict(record) if record is not None else None))


#: Largest ``zarr.json`` bgcache reads: a root record with a summary of 10,000 streams is
#: about 2 MB; anything bigger is damaged or hostile and is refused before it is read.
MAX_DOCUMENT_BYTES = 16 * 2**20


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a pool record may hold")


def load_json(raw: bytes) -> Any:
    """A metadata document parsed strictly: no NaN or infinities (``1e400`` included).

    Raises:
        ValueError: not JSON, a non-finite number, or nested too deeply to parse.

    Example:
        >>> load_json(b'{"n": 3}')
        {'n': 3}
        >>> load_json(b'{"n": 1e400}')
        Traceback (most recent call last):
        ...
        ValueError: number 1e400 is out of range
    """
    try:
        return json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def is_count(value: object, high: int, low: int = 0) -> bool:
    """Whether a record's value is an integer (not a bool) in ``[low, high]``.

    Example:
        >>> is_count(8, 10), is_count(True, 10), is_count(-1, 10), is_count(8.0, 10)
        (True, False, False, False)
    """
    return type(value) is int and low <= value <= high


def node_record(raw: bytes | None) -> dict[str, Any] | None:
    """bgcache's record in a node's ``zarr.json`` bytes; None if missing or unreadable.

    Example:
        >>> node_record(node_document({"kind": "stream", "seed": 5}))
        {'kind': 'stream', 'seed': 5}
        >>> node_record(b"{") is None, node_record(None) is None
        (True, True)
    """
    if raw is None:
        return None
    try:
        record = load_json(raw)["attributes"][ATTRS_KEY]
    except (ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def parse_block_marker(
    raw: bytes | None, where: str, n_events: int | None = None
) -> dict[str, Any]:
    """A block marker's record, checked to hold an integer ``n_hits`` that ``n_events``
    events can hold (every pixel fired at most).

    Raises:
        CorruptBlockError: the marker is missing or damaged (``where`` names the block).
    """
    if raw is None:
        raise CorruptBlockError(f"{where}: its marker {ZARR_JSON} has disappeared")
    record = node_record(raw)
    high = 2**63 - 1 if n_events is None else n_events * N_SENSORS * PIXELS_PER_SENSOR
    if record is None or not is_count(record.get("n_hits"), high):
        raise CorruptBlockError(f"{where}: its marker {ZARR_JSON} is damaged")
    return record


def software_versions() -> dict[str, str | None]:
    """Versions of the software that shapes pool content and bytes."""
    import sys

    import numcodecs
    import zarr

    torch = sys.modules.get("torch")
    return {
        "bgcache": __version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None) if torch is not None else None,
    }


def content_differences(recorded: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The content keys on which a pool's record and a build's generator disagree.

    Example:
        >>> content_differences({"model": "convnet", "precision": "fp32"},
        ...                     {"model": "convnet", "precision": "bf16"})
        ["precision: pool has 'fp32', this build 'bf16'"]
    """
    out = []
    for key in CONTENT_KEYS:
        if key in recorded or key in new:
            a, b = recorded.get(key), new.get(key)
            if a != b:
                out.append(f"{key}: pool has {a!r}, this build {b!r}")
    return out


def summary_of(streams: Mapping[int, list[tuple[int, int]]]) -> list[dict[str, Any]]:
    """The ``streams`` summary of a root record: seed, index ranges and event count each."""
    return [
        {
            "seed": seed,
            "ranges": [[a, b] for a, b in ranges],
            "events": sum(b - a for a, b in ranges),
        }
        for seed, ranges in streams.items()
    ]


def read_root_record(storage: Storage) -> dict[str, Any]:
    """The root record of a pool, checked for format name and version.

    Raises:
        PoolNotFoundError, NotAPoolError, PoolFormatError: as their names say.
    """
    state = storage.state()
    if state == "missing":
        raise PoolNotFoundError(
            f"pool '{storage.url}' does not exist: build one with 'bgcache build {storage.url} ...'"
        )
    if state == "file":
        raise NotAPoolError(f"'{storage.url}' is a file, not a pool (a pool is a directory)")
    raw = storage.read(ZARR_JSON, MAX_DOCUMENT_BYTES)
    if raw is None:
        raise NotAPoolError(f"'{storage.url}' is not a pool: it has no {ZARR_JSON}")
    try:
        doc = load_json(raw)
    except ValueError as exc:
        raise PoolFormatError(
            f"pool '{storage.url}': its {ZARR_JSON} is not valid JSON ({exc}; damaged metadata)"
        ) from None
    record = doc.get("attributes", {}).get(ATTRS_KEY) if isinstance(doc, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise NotAPoolError(
            f"'{storage.url}' is a Zarr node but not a bgcache pool (no '{ATTRS_KEY}' record)"
        )
    version = record.get("format_version")
    if type(version) is not int or version < 1:
        raise PoolFormatError(
            f"pool '{storage.url}' has format version {version!r}, which no bgcache writes "
            "(damaged metadata)"
        )
    if version > FORMAT_VERSION:
        raise PoolFormatError(
            f"pool '{storage.url}' has format version {version!r}, this bgcache ({__version__}) "
            f"reads up to {FORMAT_VERSION}: upgrade bgcache"
        )
    for key in ("content", "layout"):
        if not isinstance(record.get(key), dict):
            raise PoolFormatError(
                f"pool '{storage.url}': its root record lacks '{key}' (damaged metadata)"
            )
    for key in ("hints", "software", "streams"):
        kind = list if key == "streams" else dict
        if key in record and not isinstance(record[key], kind):
            raise PoolFormatError(
                f"pool '{storage.url}': its root record's '{key}' is not a JSON "
                f"{'array' if kind is list else 'object'} (damaged metadata)"
            )
    try:
        Layout.from_dict(record["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PoolFormatError(
            f"pool '{storage.url}': its layout record is damaged ({exc})"
        ) from None
    return record


__all__ = [
    "CONTENT_KEYS",
    "MAX_DOCUMENT_BYTES",
    "content_differences",
    "is_count",
    "json_bytes",
    "load_json",
    "node_document",
    "node_record",
    "now",
    "parse_block_marker",
    "read_root_record",
    "software_versions",
    "summary_of",
]
