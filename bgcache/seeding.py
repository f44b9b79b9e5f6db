"""Event keys (seed, index) and the counter-based random streams they key.

Every random number bgcache draws for an event comes from a Philox generator whose
128-bit key is (seed as unsigned 64 bit, index) and whose counter starts at a fixed
*purpose* word (latents, synthetic hits...). No global RNG state is ever used, so event
(seed, i) is identical whatever the batch size, order, shard, worker or resume point.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from bgcache.errors import InvalidKeyError, InvalidSeedError

SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1
INDEX_MAX = 2**64 - 1


class Purpose(IntEnum):
    """Independent random streams of one event key (the top word of the Philox counter)."""

    LATENTS = 1
    SYNTHETIC = 2
    OVERLAY = 3


class EventKey(NamedTuple):
    """Identity of a generated event: a seed (int64) and an index (>= 0) within its stream."""

    seed: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose


def validate_seed(seed: object) -> int:
    """Return ``seed`` as an int after checking it is an integer in [-2**63, 2**63 - 1].

    Example:
        >>> validate_seed(-1)
        -1
        >>> validate_seed(2**63)
        Traceback (most recent call last):
        ...
        bgcache.errors.InvalidSeedError: seed 9223372036854775808 is out of range: expected an integer in [-2**63, 2**63 - 1]
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidSeedError(
            f"seed {seed!r} is not an integer: expected an integer in [-2**63, 2**63 - 1]"
        )
    value = int(seed)
    if not SEED_MIN <= value <= SEED_MAX:
        raise InvalidSeedError(
            f"seed {value} is out of range: expected an integer in [-2**63, 2**63 - 1]"
        )
    return value


def validate_index(index: object) -> int:
    """Return ``index`` as an int after checking it is an integer in [0, 2**64 - 1]."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise InvalidKeyError(f"event index {index!r} is not an integer")
    value = int(index)
    if not 0 <= value <= INDEX_MAX:
        raise InvalidKeyError(f"event index {value} is out of range: expected 0 <= index < 2**64")
    return value


def event_key(seed: object, index: object) -> EventKey:
    """Build a validated :class:`EventKey`.

    Example:
        >>> event_key(42, 7)
        EventKey(seed=42, index=7)
    """
    return EventKey(validate_seed(seed), validate_index(index))


def as_keys(keys: Iterable[EventKey | tuple[int, int]]) -> list[EventKey]:
    """Validate a sequence of keys or (seed, index) tuples."""
    out = []
    for key in keys:
        try:
            seed, index = key
        except (TypeError, ValueError):
            raise InvalidKeyError(f"event key {key!r} is not a (seed, index) pair") from None
        out.append(event_key(seed, index))
    return out


def stream_keys(seed: int, start: int, stop: int) -> list[EventKey]:
    """The keys (seed, start) ... (seed, stop - 1).

    Example:
        >>> stream_keys(5, 0, 2)
        [EventKey(seed=5, index=0), EventKey(seed=5, index=1)]
    """
    seed = validate_seed(seed)
    return [EventKey(seed, i) for i in range(validate_index(start), validate_index(stop))]


def seed_from_string(seed_string: object) -> int:
    """Derive an int64 seed from a framework seed string, as Belle II does.

    The first 8 bytes of ``sha512(str(seed_string))``, big-endian, signed.

    Example:
        >>> seed_from_string("12345")
        3902246593939837825
    """
    digest = hashlib.sha512(str(seed_string).encode("utf-8")).digest()[:8]
    return int.from_bytes(digest, "big", signed=True)


def event_rng(seed: int, index: int, purpose: Purpose = Purpose.LATENTS) -> np.random.Generator:
    """The counter-based generator of one event key and purpose.

    Example:
        >>> a = event_rng(1, 2).standard_normal(3)
        >>> b = event_rng(1, 2).standard_normal(3)
        >>> bool((a == b).all())
        True

    Raises:
        InvalidSeedError: if ``seed`` is not an int64 (an out-of-range seed would
            otherwise wrap onto a valid one: 2**64 -> 0).
        InvalidKeyError: if ``index`` is not in [0, 2**64 - 1].
    """
    seed, index = validate_seed(seed), validate_index(index)
    key = (seed & 0xFFFF_FFFF_FFFF_FFFF) | (index << 64)
    counter = np.array([0, 0, 0, int(purpose)], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=counter))


def event_latents(key: EventKey | tuple[int, int], n: int, dim: int) -> np.ndarray:
    """Latent vectors (float32, shape (n, dim)) of one event: standard normal from its key."""
    seed, index = key
    rng = event_rng(seed, index, Purpose.LATENTS)
    return rng.standard_normal((n, dim), dtype=np.float32)


def batch_latents(keys: Sequence[EventKey | tuple[int, int]], n: int, dim: int) -> np.ndarray:
    """Latents of several events stacked to shape (len(keys), n, dim)."""
    out = np.empty((len(keys), n, dim), dtype=np.float32)
    for i, key in enumerate(keys):
        out[i] = event_latents(key, n, dim)
    return out
