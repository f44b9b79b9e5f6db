"""A pool written by an earlier bgcache (``tests/data/pool-v1``) reads unchanged.

The pool was written before the store redesign (format ``bgcache-pool`` v1); its events'
digests are in ``tests/data/pool-v1.json``. Every version must read the same events at the
same keys from it, verify it clean and rebuild the same keys into byte-identical columns.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bgcache import build_pool, open_pool
from bgcache.store.verify import verify_pool

DATA = Path(__file__).parent / "data"
POOL = DATA / "pool-v1"
EXPECTED = json.loads((DATA / "pool-v1.json").read_text())["events"]


def digest(event: object) -> str:
    h = hashlib.sha256()
    for column in (event.sensor, event.u, event.v, event.charge):  # type: ignore[attr-defined]
        h.update(np.ascontiguousarray(column).tobytes())
    return h.hexdigest()


@pytest.fixture
def old_pool(tmp_path: Path) -> Path:
    """A copy (tests never change the committed pool)."""
    return Path(shutil.copytree(POOL, tmp_path / "pool-v1"))


def test_every_event_reads_as_written(old_pool: Path) -> None:
    pool = open_pool(old_pool)
    assert len(pool) == len(EXPECTED) == 5
    for position, want in enumerate(EXPECTED):
        key = pool.key(position)
        assert (key.seed, key.index) == (want["seed"], want["index"])
        event = pool.event_by_key(key.seed, key.index)
        assert event.n_hits == want["n_hits"]
        assert digest(event) == want["sha256"]
    read = [event for _, events in pool.blocks() for event in events]
    assert [digest(e) for e in read] == [w["sha256"] for w in EXPECTED]


def test_it_verifies_clean(old_pool: Path) -> None:
    report = verify_pool(old_pool)
    assert report.ok, report.problems


def test_the_same_keys_rebuild_into_the_same_bytes(
    old_pool: Path, tmp_path: Path, pool_files: Callable[[object], dict[str, bytes]]
) -> None:
    new = tmp_path / "new"
    build_pool(new, model="synthetic", seed=5, events=4, block_events=2)
    build_pool(new, model="synthetic", seed=-9, events=1, block_events=2)
    old_files = {k: v for k, v in pool_files(old_pool).items() if "/1~1/" not in k}
    assert pool_files(new) == old_files  # the superseded short block is the old pool's only extra
