"""bgcache.adapters.torch: map-style and iterable datasets over a pool, collate_sparse,
worker processes, the overlay draw policy across workers, and importing without torch."""

from __future__ import annotations

import collections
import itertools
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, Dataset, IterableDataset  # noqa: E402

from bgcache.adapters.torch import (  # noqa: E402
    PoolDataset,
    PoolIterableDataset,
    collate_sparse,
    to_item,
)
from bgcache.build import build_pool  # noqa: E402
from bgcache.errors import (  # noqa: E402
    EventNotFoundError,
    InvalidSeedError,
    PositionError,
    UsageError,
)
from bgcache.hits import SparseEvent  # noqa: E402
from bgcache.overlay import PoolOverlay, draw_positions, share_bounds  # noqa: E402
from bgcache.seeding import EventKey  # noqa: E402
from bgcache.store import Pool, open_pool  # noqa: E402


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 events of seed 0 in blocks of 8, and 5 of seed 7 (a short block): 29 in all."""
    path = tmp_path_factory.mktemp("torch") / "p"
    build_pool(path, model="synthetic", events=24, block_events=8)
    build_pool(path, model="synthetic", seed=7, events=5)
    return path


@pytest.fixture(scope="module")
def pool(pool_path: Path) -> Pool:
    return open_pool(pool_path)


def all_keys(pool: Pool) -> list[EventKey]:
    return [pool.key(p) for p in range(len(pool))]


def keys_of(items: list[dict[str, Any]]) -> list[EventKey]:
    return [item["key"] for item in items]


# -- map-style ------------------------------------------------------------------------------


def test_sparse_items_are_the_pool_columns(pool_path: Path, pool: Pool) -> None:
    data = PoolDataset(pool_path)
    assert isinstance(data, PoolDataset) and isinstance(data, Dataset)
    assert len(data) == len(pool) == 29
    for position in (0, 7, 8, 23, 24, 28, -1):
        item = data[position]
        event = pool.event(position)
        assert set(item) == {"sensor", "u", "v", "charge", "key"}
        assert item["key"] == pool.key(position) == data.key(position)
        for name, dtype in [
            ("sensor", torch.int64),
            ("u", torch.int64),
            ("v", torch.int64),
            ("charge", torch.int32),
        ]:
            assert item[name].dtype == dtype and item[name].shape == (event.n_hits,)
            assert np.array_equal(item[name].numpy(), getattr(event, name))


def test_dense_items_equal_to_dense(pool_path: Path, pool: Pool) -> None:
    data = PoolDataset(pool, output="dense")
    for position in (3, 26):
        image = data[position]
        assert image.shape == (40, 250, 768) and image.dtype == torch.uint8
        assert np.array_equal(image.numpy(), pool.event(position).to_dense())


def test_transform_is_applied(pool_path: Path, pool: Pool) -> None:
    data = PoolDataset(pool_path, transform=lambda item: item["charge"].sum().item())
    assert data[5] == int(pool.event(5).charge.sum())


@pytest.mark.parametrize("position", [29, -30], ids=["past-end", "before-start"])
def test_position_out_of_range(pool_path: Path, position: int) -> None:
    data = PoolDataset(pool_path)
    with pytest.raises(PositionError, match="out of range: the dataset holds 29 events"):
        data[position]
    with pytest.raises(IndexError):  # ends plain iteration over the dataset
        data[position]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"output": "image"}, UsageError, "output must be one of sparse, dense"),
        ({"transform": 3}, UsageError, "transform must be callable"),
    ],
    ids=["output", "transform"],
)
def test_map_dataset_refuses_bad_arguments(
    pool_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        PoolDataset(pool_path, **kwargs)


def test_pickles_without_the_open_pool(pool_path: Path, pool: Pool) -> None:
    data = PoolDataset(pool_path)
    data[0]
    copy = pickle.loads(pickle.dumps(data))
    assert type(copy) is type(data) and copy._pool is None
    assert copy[12]["key"] == pool.key(12)
    assert np.array_equal(copy[12]["u"].numpy(), pool.event(12).u)


def test_map_dataset_in_dataloader_workers(pool_path: Path, pool: Pool) -> None:
    data = PoolDataset(pool_path)
    loader = DataLoader(data, batch_size=5, num_workers=2, collate_fn=collate_sparse)
    batches = list(loader)
    assert [len(b["key"]) for b in batches] == [5, 5, 5, 5, 5, 4]
    assert [k for b in batches for k in b["key"]] == all_keys(pool)
    last = batches[-1]
    events = [pool.event(p) for p in range(25, 29)]
    assert last["ptr"].tolist() == [0, *np.cumsum([e.n_hits for e in events]).tolist()]
    for i, event in enumerate(events):
        hits = last["batch"] == i
        assert np.array_equal(last["v"][hits].numpy(), event.v)
        assert np.array_equal(last["charge"][hits].numpy(), event.charge)


def test_dataset_reads_the_events_seen_at_creation_after_the_pool_grows(
    tmp_path: Path,
) -> None:
    build_pool(tmp_path / "p", model="synthetic", seed=3, events=5, block_events=4)  # 4 + 1
    before = open_pool(tmp_path / "p")
    data = PoolDataset(tmp_path / "p")
    stream = PoolIterableDataset(tmp_path / "p", seed=1)
    build_pool(tmp_path / "p", model="synthetic", seed=1, events=4)  # a stream before seed 3
    build_pool(tmp_path / "p", model="synthetic", seed=3, events=8)  # block "1~1" superseded
    assert len(open_pool(tmp_path / "p")) == 12
    for copy in (data, pickle.loads(pickle.dumps(data))):  # the pool reopened in a "worker"
        assert len(copy) == 5
        assert [copy[i]["key"] for i in range(5)] == [EventKey(3, i) for i in range(5)]
        assert np.array_equal(copy[4]["u"].numpy(), before.event(4).u)
    assert sorted(keys_of(list(pickle.loads(pickle.dumps(stream))))) == all_keys(before)


def test_missing_block_is_reported(tmp_path: Path) -> None:
    import shutil

    build_pool(tmp_path / "p", model="synthetic", events=6, block_events=4)
    data = PoolDataset(tmp_path / "p")
    stream = PoolIterableDataset(tmp_path / "p")
    shutil.rmtree(tmp_path / "p" / "streams")
    build_pool(tmp_path / "p", model="synthetic", seed=2, events=2)
    copy = pickle.loads(pickle.dumps(data))
    with pytest.raises(EventNotFoundError, match=r"event \(seed 0, index 0\) is not in pool"):
        copy[0]
    with pytest.raises(EventNotFoundError, match="no longer holds the events"):
        list(pickle.loads(pickle.dumps(stream)))


# -- collate_sparse ---------------------------------------------------------------------------


def test_collate_sparse_concatenates_with_batch_index() -> None:
    events = [
        SparseEvent([0, 5], [1, 2], [3, 4], [10, 20]),
        SparseEvent.empty(),
        SparseEvent([39], [249], [767], [255]),
    ]
    batch = collate_sparse([to_item(e, EventKey(9, i)) for i, e in enumerate(events)])
    assert batch["sensor"].tolist() == [0, 5, 39]
    assert batch["u"].tolist() == [1, 2, 249] and batch["v"].tolist() == [3, 4, 767]
    assert batch["charge"].tolist() == [10, 20, 255] and batch["charge"].dtype == torch.int32
    assert batch["batch"].tolist() == [0, 0, 2] and batch["batch"].dtype == torch.int64
    assert batch["ptr"].tolist() == [0, 2, 2, 3]
    assert batch["key"] == [EventKey(9, 0), EventKey(9, 1), EventKey(9, 2)]


def test_wide_charges_give_int32_images() -> None:
    image = to_item(SparseEvent([1], [2], [3], np.array([300], np.uint16)), EventKey(0, 0), "dense")
    assert image.dtype == torch.int32 and int(image[1, 2, 3]) == 300


def test_collate_sparse_of_nothing_and_of_dense_items() -> None:
    empty = collate_sparse([])
    assert empty["sensor"].dtype == torch.int64 and empty["ptr"].tolist() == [0]
    with pytest.raises(UsageError, match="default collate for dense items"):
        collate_sparse([to_item(SparseEvent.empty(), EventKey(0, 0), "dense")])


# -- iterable: the overlay draw policy -----------------------------------------------------------


def test_without_workers_it_hands_out_what_the_overlay_hands_out(
    pool_path: Path, pool: Pool
) -> None:
    data = PoolIterableDataset(pool_path, seed=11, njobs=2, job=1)
    assert isinstance(data, PoolIterableDataset) and isinstance(data, IterableDataset)
    items = list(data)
    order = draw_positions(29, 11, 1, 2)
    assert data.positions() == order and len(data) == len(order) == 15
    assert keys_of(items) == [pool.key(p) for p in order]
    with PoolOverlay(pool_path, seed=11, njobs=2, job=1, on_exhausted="error") as overlay:
        for item in items:
            event = overlay.next_event()
            assert np.array_equal(item["u"].numpy(), event.u)
            assert np.array_equal(item["charge"].numpy(), event.charge)


def test_two_workers_take_disjoint_shares_every_event_once_per_pass(
    pool_path: Path, pool: Pool
) -> None:
    data = PoolIterableDataset(pool_path, seed=4, passes=2)
    assert len(data) == 58
    shares = [data.positions(worker=w, workers=2) for w in range(2)]
    assert set(shares[0]).isdisjoint(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(29))

    def run(dataset: PoolIterableDataset) -> list[EventKey]:
        loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_sparse)
        return [k for batch in loader for k in batch["key"]]

    keys = run(data)
    assert collections.Counter(keys) == dict.fromkeys(all_keys(pool), 2)
    for share in shares:  # each worker reads its share in draw order, pass after pass
        mine = [pool.key(p) for p in share]
        assert [k for k in keys if k in mine] == mine * 2
    assert run(data) == keys  # deterministic
    other = run(PoolIterableDataset(pool_path, seed=5, passes=2))
    assert other != keys and sorted(other) == sorted(keys)


def test_workers_of_jobs_split_each_job_share(pool_path: Path) -> None:
    seen: list[int] = []
    for job in range(3):
        data = PoolIterableDataset(pool_path, seed=2, njobs=3, job=job)
        mine = [p for w in range(4) for p in data.positions(worker=w, workers=4)]
        start, stop = share_bounds(29, job, 3)
        assert sorted(mine) == list(range(start, stop))
        seen += mine
    assert sorted(seen) == list(range(29))


def test_dense_output_and_dataloader_default_collate(pool_path: Path, pool: Pool) -> None:
    data = PoolIterableDataset(pool_path, seed=1, njobs=8, job=3, output="dense")
    (images,) = list(DataLoader(data, batch_size=8))
    order = data.positions()
    assert images.shape == (len(order), 40, 250, 768) and images.dtype == torch.uint8
    for image, position in zip(images, order, strict=True):
        assert np.array_equal(image.numpy(), pool.event(position).to_dense())


def test_passes_none_wraps_forever(pool_path: Path, pool: Pool) -> None:
    data = PoolIterableDataset(pool_path, seed=9, njobs=4, job=2, passes=None)
    keys = keys_of(list(itertools.islice(data, 20)))
    assert keys == [pool.key(p) for p in data.positions()] * 2 + keys[:6]
    with pytest.raises(TypeError, match="no length"):
        len(data)


def test_an_empty_share_ends_at_once_even_forever(pool_path: Path) -> None:
    data = PoolIterableDataset(pool_path, njobs=16, job=0, passes=None)
    assert list(data.iter_worker(0, 4)) == []  # sub-job 0 of 64: no event of 29


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"njobs": 0}, UsageError, "njobs must be an integer in 1..65536"),
        ({"njobs": 2, "job": 2}, UsageError, "job must be an integer in 0..1"),
        ({"passes": 0}, UsageError, "passes must be an integer >= 1 or None"),
        ({"seed": 2**63}, InvalidSeedError, "out of range"),
        ({"output": "image"}, UsageError, "output must be one of"),
    ],
    ids=["njobs", "job", "passes", "seed", "output"],
)
def test_iterable_dataset_refuses_bad_arguments(
    pool_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        PoolIterableDataset(pool_path, **kwargs)


# -- without torch ---------------------------------------------------------------------------


def test_module_imports_without_torch_and_datasets_ask_for_it(pool_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import bgcache.adapters.torch as t\n"
        "from bgcache.errors import MissingDependencyError\n"
        "for make in (t.PoolDataset, t.PoolIterableDataset):\n"
        "    try:\n"
        f"        make({str(pool_path)!r})\n"
        "    except MissingDependencyError as exc:\n"
        "        print(\"pip install 'bgcache[gan]'\" in str(exc))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_unpickles_in_a_fresh_process(pool_path: Path, pool: Pool) -> None:
    """What spawn/forkserver workers do: the torch subclass is made again there."""
    data = PoolIterableDataset(pool_path, seed=6, njobs=3, job=2)
    code = (
        "import pickle, sys\n"
        "from torch.utils.data import IterableDataset\n"
        "data = pickle.loads(sys.stdin.buffer.read())\n"
        "print(isinstance(data, IterableDataset), type(data).__name__)\n"
        "print(*[item['key'].index for item in data])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(data), capture_output=True, check=True
    )
    lines = out.stdout.decode().splitlines()
    assert lines[0] == "True PoolIterableDataset"
    assert lines[1].split() == [str(pool.key(p).index) for p in data.positions()]
