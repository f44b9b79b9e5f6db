"""Tests for bgcache.seeding: seed validation, Belle II seed derivation, counter-based latents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from bgcache.errors import BgcacheError, InvalidKeyError, InvalidSeedError
from bgcache.seeding import (
    SEED_MAX,
    SEED_MIN,
    EventKey,
    Purpose,
    as_keys,
    batch_latents,
    event_key,
    event_latents,
    event_rng,
    seed_from_string,
    stream_keys,
    validate_index,
    validate_seed,
)

N, DIM = 40, 96

# Seeds covering zero, small, negative, both int64 extremes and a hash-derived one.
SEEDS = [0, 1, -1, 42, -(2**40) + 3, SEED_MIN, SEED_MAX, seed_from_string("bgcache")]
SEED_IDS = ["0", "1", "-1", "42", "-2**40+3", "int64-min", "int64-max", "from-string"]
# A range long enough for batches of 64 to span several batches, plus huge indices.
INDICES = [*range(70), 2**32, 2**63, 2**64 - 1]


@pytest.fixture
def restore_global_rng() -> Iterator[None]:
    state = np.random.get_state()  # noqa: NPY002
    yield
    np.random.set_state(state)  # noqa: NPY002


# -- validate_seed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed",
    [
        0,
        1,
        -1,
        SEED_MIN,
        SEED_MAX,
        np.int64(SEED_MIN),
        np.int64(-5),
        np.uint64(SEED_MAX),
        np.int8(7),
    ],
    ids=["0", "1", "-1", "min", "max", "np.int64-min", "np.int64", "np.uint64-max", "np.int8"],
)
def test_validate_seed_accepts(seed: object) -> None:
    value = validate_seed(seed)
    assert type(value) is int
    assert value == int(seed)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("seed", "match"),
    [
        (2**63, "out of range"),
        (-(2**63) - 1, "out of range"),
        (2**64, "out of range"),
        (np.uint64(2**63), "out of range"),
        (1.5, "not an integer"),
        (1.0, "not an integer"),
        ("3", "not an integer"),
        (True, "not an integer"),
        (np.bool_(False), "not an integer"),
        (None, "not an integer"),
    ],
    ids=[
        "2**63",
        "-2**63-1",
        "2**64",
        "np.uint64-2**63",
        "1.5",
        "1.0",
        "str",
        "True",
        "np.bool",
        "None",
    ],
)
def test_validate_seed_rejects(seed: object, match: str) -> None:
    with pytest.raises(InvalidSeedError, match=match) as info:
        validate_seed(seed)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BgcacheError)


# -- seed_from_string -------------------------------------------------------------------


def _belle2_seed(seed_string: object) -> int:
    digest = hashlib.sha512(str(seed_string).encode()).digest()
    return int.from_bytes(digest[:8], byteorder="big", signed=True)


@pytest.mark.parametrize(
    "seed_string",
    ["12345", "", "bgcache", "Belle II ümlaut", 12345, -7, 2**70],
    ids=["digits", "empty", "word", "unicode", "int", "negative-int", "big-int"],
)
def test_seed_from_string_matches_belle2(seed_string: object) -> None:
    seed = seed_from_string(seed_string)
    assert seed == _belle2_seed(seed_string)
    assert validate_seed(seed) == seed


def test_seed_from_string_known_value_and_sign() -> None:
    assert seed_from_string("12345") == 3902246593939837825
    # an int and its decimal string give the same seed (str() is hashed)
    assert seed_from_string(12345) == seed_from_string("12345")
    # big-endian and signed: some strings must map to negative seeds
    seeds = [seed_from_string(str(i)) for i in range(64)]
    assert any(s < 0 for s in seeds)
    assert any(s > 0 for s in seeds)
    assert len(set(seeds)) == 64


# -- the key contract: latents depend on (seed, index) only ------------------------------


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
def test_latents_independent_of_batching_and_order(seed: int) -> None:
    keys = [(seed, i) for i in INDICES]
    alone = np.stack([event_latents(k, N, DIM) for k in keys])
    assert alone.shape == (len(keys), N, DIM)
    assert alone.dtype == np.float32

    for size in (1, 3, 7, 64):
        batched = np.concatenate(
            [
                batch_latents(keys[start : start + size], N, DIM)
                for start in range(0, len(keys), size)
            ]
        )
        np.testing.assert_array_equal(batched, alone, err_msg=f"batch size {size}")

    perm = np.random.default_rng(abs(seed) % 1000).permutation(len(keys))
    shuffled = batch_latents([keys[p] for p in perm], N, DIM)
    np.testing.assert_array_equal(shuffled, alone[perm])

    # EventKey objects and plain tuples are the same key
    np.testing.assert_array_equal(
        batch_latents([EventKey(*k) for k in keys[:5]], N, DIM), alone[:5]
    )


def test_latents_independent_of_neighbours_in_batch() -> None:
    """A batch mixing seeds gives each key the latents it has alone."""
    keys = [(s, i) for i in (0, 5, 2**64 - 1) for s in SEEDS]
    mixed = batch_latents(keys, N, DIM)
    for row, key in zip(mixed, keys, strict=True):
        np.testing.assert_array_equal(row, event_latents(key, N, DIM))


def test_latents_depend_on_shape_only_as_prefix() -> None:
    """Latents are a stream: asking for fewer events' worth of sensors is a prefix."""
    full = event_latents((3, 4), N, DIM).reshape(-1)
    part = event_latents((3, 4), 10, DIM).reshape(-1)
    np.testing.assert_array_equal(part, full[: part.size])


def test_different_keys_give_different_streams() -> None:
    keys = [(s, i) for s in SEEDS for i in (0, 1, 2, 2**63, 2**64 - 1)]
    # swapped and sign-flipped pairs that a sloppy key packing would confuse
    keys += [(1, 0), (0, 1), (2, 3), (3, 2), (-2, 0), (2**63 - 2, 0)]
    keys = list(dict.fromkeys(keys))
    firsts = {tuple(event_latents(k, 1, 8)[0].tolist()) for k in keys}
    assert len(firsts) == len(keys)


def test_purposes_give_different_streams() -> None:
    assert len({int(p) for p in Purpose}) == len(Purpose)
    draws = {p: event_rng(11, 3, p).standard_normal(16) for p in Purpose}
    values = [tuple(d.tolist()) for d in draws.values()]
    assert len(set(values)) == len(values)
    # and a purpose stream is not the latents of a neighbouring key either
    assert not np.array_equal(
        draws[Purpose.SYNTHETIC], event_rng(11, 4, Purpose.LATENTS).standard_normal(16)
    )
    # event_latents uses the LATENTS purpose
    np.testing.assert_array_equal(
        event_latents((11, 3), 2, 8),
        event_rng(11, 3, Purpose.LATENTS).standard_normal((2, 8), dtype=np.float32),
    )


def test_latents_are_standard_normal() -> None:
    draws = batch_latents([(seed, i) for seed in (0, -9, SEED_MAX) for i in range(100)], N, DIM)
    x = draws.astype(np.float64).reshape(-1)  # 1,152,000 samples
    tol = 5 / np.sqrt(x.size)
    assert abs(x.mean()) < tol
    assert abs(x.std() - 1) < 5 * tol
    assert abs(np.mean(np.abs(x) > 2) - 0.0455) < 0.002
    assert abs(np.median(x)) < 0.01
    # per-event means are not all shifted the same way, and neighbouring indices are uncorrelated
    per_event = draws.reshape(draws.shape[0], -1)
    corr = np.corrcoef(per_event[:-1].reshape(-1), per_event[1:].reshape(-1))[0, 1]
    assert abs(corr) < 0.01
    assert np.all(np.isfinite(draws))


@pytest.mark.usefixtures("restore_global_rng")
def test_no_global_rng_state_used() -> None:
    before = batch_latents([(5, i) for i in range(4)], N, DIM)
    state = np.random.get_state()  # noqa: NPY002
    event_latents((5, 0), N, DIM)
    after_state = np.random.get_state()  # noqa: NPY002
    assert state[0] == after_state[0]
    np.testing.assert_array_equal(state[1], after_state[1])
    assert state[2:] == after_state[2:]

    for global_seed in (0, 1, 12345):
        np.random.seed(global_seed)  # noqa: NPY002 - the point of the test
        np.random.random(17)  # noqa: NPY002
        np.testing.assert_array_equal(batch_latents([(5, i) for i in range(4)], N, DIM), before)


def test_event_rng_is_reproducible() -> None:
    a = event_rng(SEED_MIN, 2**64 - 1, Purpose.SYNTHETIC).integers(0, 2**32, 100)
    b = event_rng(SEED_MIN, 2**64 - 1, Purpose.SYNTHETIC).integers(0, 2**32, 100)
    np.testing.assert_array_equal(a, b)


# -- keys -------------------------------------------------------------------------------


def test_event_key_and_stream_keys() -> None:
    key = event_key(np.int64(-3), np.uint64(7))
    assert key == EventKey(-3, 7)
    assert type(key.seed) is int
    assert type(key.index) is int
    assert stream_keys(9, 2, 5) == [EventKey(9, 2), EventKey(9, 3), EventKey(9, 4)]
    assert stream_keys(9, 5, 5) == []


def test_as_keys_accepts_pairs() -> None:
    assert as_keys([(1, 2), EventKey(-1, 0), [SEED_MAX, 2**64 - 1], np.array([3, 4])]) == [
        EventKey(1, 2),
        EventKey(-1, 0),
        EventKey(SEED_MAX, 2**64 - 1),
        EventKey(3, 4),
    ]
    assert as_keys([]) == []


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (5, "not a \\(seed, index\\) pair"),
        (None, "not a \\(seed, index\\) pair"),
        ((1,), "not a \\(seed, index\\) pair"),
        ((1, 2, 3), "not a \\(seed, index\\) pair"),
        ((1, -1), "out of range"),
        ((1, 2**64), "out of range"),
        ((1, 1.5), "not an integer"),
        ((1, "3"), "not an integer"),
        ((1, None), "not an integer"),
        ((1, True), "not an integer"),
    ],
    ids=[
        "int",
        "None",
        "1-tuple",
        "3-tuple",
        "negative-index",
        "index-2**64",
        "float-index",
        "str-index",
        "None-index",
        "bool-index",
    ],
)
def test_as_keys_rejects_malformed_keys(key: object, match: str) -> None:
    with pytest.raises(InvalidKeyError, match=match) as info:
        as_keys([(0, 0), key])  # type: ignore[list-item]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("seed", [2**63, 1.5, "7"], ids=["2**63", "float", "str"])
def test_as_keys_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(InvalidSeedError):
        as_keys([(seed, 0)])  # type: ignore[list-item]


def test_negative_index_rejected() -> None:
    with pytest.raises(InvalidKeyError, match="out of range"):
        validate_index(-1)
    with pytest.raises(InvalidKeyError, match="out of range"):
        event_key(0, -1)
    with pytest.raises(InvalidKeyError, match="out of range"):
        stream_keys(0, -1, 3)
    with pytest.raises(InvalidKeyError, match="out of range"):
        event_latents((0, -1), N, DIM)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ((2**63, 0), InvalidSeedError),
        ((2**64, 0), InvalidSeedError),
        ((SEED_MIN - 1, 0), InvalidSeedError),
        ((1.5, 0), InvalidSeedError),
        ((0, 2**64), InvalidKeyError),
    ],
    ids=["seed-2**63", "seed-2**64", "seed-below-min", "float-seed", "index-2**64"],
)
def test_latents_reject_invalid_keys(key: tuple[object, object], error: type[Exception]) -> None:
    """Out-of-range seeds must not silently alias a valid one (2**64 would wrap to 0)."""
    with pytest.raises(error, match=r"out of range|not an integer"):
        event_latents(key, N, DIM)  # type: ignore[arg-type]
    with pytest.raises(error):
        batch_latents([(0, 0), key], N, DIM)  # type: ignore[list-item]
