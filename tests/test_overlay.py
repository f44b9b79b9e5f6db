"""PoolOverlay: draw policy, exhaustion (generate, reuse, error), fallback keys and
checkpoint checks, prefetch, damaged blocks, counters, and the torch-free pool path."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import bgcache
from bgcache.build import build_pool
from bgcache.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptBlockError,
    MissingDependencyError,
    PoolExhaustedError,
    UsageError,
)
from bgcache.hits import merge
from bgcache.overlay import (
    FALLBACK_INDEX_BITS,
    PoolOverlay,
    draw_positions,
    fallback_seed,
    share_bounds,
)
from bgcache.store import open_pool
from bgcache.store.format import stream_name

SYNTH = bgcache.load_model("synthetic")


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 events of seed 4 and 10 of seed 9 (40 in all), blocks of 8."""
    path = tmp_path_factory.mktemp("overlay") / "pool"
    build_pool(path, model="synthetic", seed=4, events=30, block_events=8)
    build_pool(path, model="synthetic", seed=9, events=10)
    return path


def draw(
    path: Path, n: int, **kwargs: object
) -> tuple[list[bgcache.SparseEvent], list[tuple[str, bgcache.EventKey]], PoolOverlay]:
    overlay = PoolOverlay(path, **kwargs)  # type: ignore[arg-type]
    events, sources = [], []
    with overlay:
        for _ in range(n):
            events.append(overlay.next_event())
            assert overlay.last is not None
            sources.append(overlay.last)
    return events, sources, overlay


@pytest.mark.parametrize(
    ("prefetch", "threads"),
    [(0, 1), (1, 1), (3, 1), (2, 3)],
    ids=["no-prefetch", "prefetch-1", "prefetch-3", "prefetch-2-threads-3"],
)
def test_one_job_hands_out_every_pool_event_once_in_draw_order(
    pool_path: Path, prefetch: int, threads: int
) -> None:
    pool = open_pool(pool_path)
    events, sources, overlay = draw(
        pool_path, 40, seed=11, prefetch=prefetch, prefetch_threads=threads, on_exhausted="error"
    )
    order = draw_positions(40, 11, 0, 1)
    assert [key for _, key in sources] == [pool.key(p) for p in order]
    assert events == [pool.event(p) for p in order]
    assert {s for s, _ in sources} == {"pool"}
    assert overlay.stats.from_pool == 40 and overlay.stats.read_seconds > 0


@pytest.mark.parametrize("prefetch", [0, 2], ids=["no-prefetch", "prefetch"])
def test_packed_windows_hand_out_the_same_draw(pool_path: Path, prefetch: int) -> None:
    """``packed=True`` hands the reader's buffers over (next_packed, no copy) and splits them
    on next_event: the same events and keys as the default, the fallback's events packed."""
    want, want_sources, _ = draw(pool_path, 14, seed=3, job=1, njobs=4)
    with PoolOverlay(pool_path, seed=3, job=1, njobs=4, packed=True, prefetch=prefetch) as overlay:
        got = []
        for i in range(14):
            packed = overlay.next_packed() if i % 2 == 0 else None
            got.append(packed.unpack() if packed is not None else overlay.next_event())
            assert overlay.last == want_sources[i]
            if packed is not None and i < 10:  # a pool event: a view into the window's buffer
                assert packed.index_delta.base is not None
    assert got == want
    with PoolOverlay(pool_path, seed=3, job=1, njobs=4) as overlay:
        assert overlay.next_packed().unpack() == want[0]  # the default splits, then packs


def test_same_seed_same_sequence_other_seed_other_start(pool_path: Path) -> None:
    a = [k for _, k in draw(pool_path, 12, seed=5, on_exhausted="error")[1]]
    b = [k for _, k in draw(pool_path, 12, seed=5, on_exhausted="error")[1]]
    c = [k for _, k in draw(pool_path, 12, seed=6, on_exhausted="error")[1]]
    assert a == b and a != c


def test_jobs_take_disjoint_shares(pool_path: Path) -> None:
    keys = []
    for job in range(3):
        start, stop = share_bounds(40, job, 3)
        _, sources, _ = draw(
            pool_path, stop - start, seed=2, job=job, njobs=3, on_exhausted="error"
        )
        job_keys = [k for _, k in sources]
        assert len(set(job_keys)) == len(job_keys)  # no duplicates within a job
        keys += job_keys
    assert len(keys) == 40 and len(set(keys)) == 40  # disjoint and complete


def test_exhaustion_generates_with_fallback_keys(pool_path: Path) -> None:
    events, sources, overlay = draw(pool_path, 16, seed=3, job=1, njobs=4)  # share of 10
    assert [s for s, _ in sources] == ["pool"] * 10 + ["generated"] * 6
    fb = fallback_seed(3, frozenset({4, 9}))
    assert fb not in (4, 9)
    generated = [k for s, k in sources if s == "generated"]
    assert generated == [(fb, (1 << FALLBACK_INDEX_BITS) + k) for k in range(6)]
    # bit-identical to what a build stores for the same keys
    assert events[10:] == SYNTH.events(generated)
    assert (overlay.stats.from_pool, overlay.stats.generated, overlay.stats.reused) == (10, 6, 0)
    assert overlay.stats.generate_seconds > 0


def test_prefetch_generate_gives_the_same_events(pool_path: Path) -> None:
    plain, plain_sources, _ = draw(pool_path, 14, seed=3, job=1, njobs=4)
    ahead, ahead_sources, overlay = draw(
        pool_path, 14, seed=3, job=1, njobs=4, prefetch_generate=True
    )
    assert ahead_sources == plain_sources and ahead == plain
    assert overlay.stats.generated == 4


def test_fallback_keys_of_jobs_never_collide() -> None:
    from bgcache.overlay import fallback_key

    keys = {fallback_key(7, job, k) for job in range(4) for k in range(100)}
    assert len(keys) == 400
    assert fallback_seed(7, frozenset({fallback_seed(7, frozenset())})) != fallback_seed(
        7, frozenset()
    )


def test_reuse_wraps_and_counts(pool_path: Path) -> None:
    events, sources, overlay = draw(pool_path, 25, seed=1, job=0, njobs=4, on_exhausted="reuse")
    assert [s for s, _ in sources] == ["pool"] * 10 + ["reused"] * 15
    keys = [k for _, k in sources]
    assert keys[10:20] == keys[:10] and keys[20:] == keys[:5]
    assert events[10:20] == events[:10]
    assert (overlay.stats.from_pool, overlay.stats.reused, overlay.stats.generated) == (10, 15, 0)


def test_error_mode_raises_after_the_share(pool_path: Path) -> None:
    overlay = PoolOverlay(pool_path, job=3, njobs=4, on_exhausted="error")
    for _ in range(10):
        overlay.next_event()
    with pytest.raises(PoolExhaustedError, match="used up its share"):
        overlay.next_event()
    overlay.close()


def test_end_of_job_summary_is_logged(pool_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bgcache.overlay"):
        draw(pool_path, 3, njobs=2)
    assert "3 events: 3 from the pool, 0 generated, 0 reused" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"njobs": 0}, "njobs"),
        ({"job": 2, "njobs": 2}, "job must be"),
        ({"on_exhausted": "wrap"}, "on_exhausted must be one of"),
        ({"prefetch": -1}, "prefetch"),
        ({"seed": 2**64}, "out of range"),
        ({"on_corrupt": "ignore"}, "on_corrupt"),
        ({"prefetch_threads": 0}, "prefetch_threads"),
    ],
    ids=["njobs", "job", "on-exhausted", "prefetch", "seed", "on-corrupt", "prefetch-threads"],
)
def test_bad_arguments(pool_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        PoolOverlay(pool_path, **kwargs)  # type: ignore[arg-type]


def test_damaged_block_raises_or_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "p"
    build_pool(path, model="synthetic", events=24, block_events=8)
    shard = path / f"streams/{stream_name(0)}/1/index/c/0"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptBlockError, match=r"indices 8\.\.15"):
        draw(path, 24, seed=0, on_exhausted="error")
    for threads in (1, 2):
        _, sources, overlay = draw(
            path, 16, seed=0, on_exhausted="error", on_corrupt="skip", prefetch_threads=threads
        )
        assert all(not 8 <= k.index < 16 for _, k in sources)
        assert (overlay.stats.skipped_blocks, overlay.stats.skipped_events) == (1, 8)


def test_merge_with_signal_adds_charges(pool_path: Path) -> None:
    with PoolOverlay(pool_path) as overlay:
        background = overlay.next_event()
    sensor, u, v = int(background.sensor[0]), int(background.u[0]), int(background.v[0])
    signal = bgcache.SparseEvent([sensor], [u], [v], [250])
    merged = merge(signal, background)
    assert merged.n_hits == background.n_hits
    assert int(merged.charge[0]) == 250 + int(background.charge[0])  # no cap at 255


def test_pool_only_overlay_never_imports_torch(pool_path: Path) -> None:
    code = (
        "import sys, bgcache\n"
        f"o = bgcache.PoolOverlay({str(pool_path)!r}, njobs=2, on_exhausted='reuse')\n"
        "[o.next_event() for _ in range(30)]\n"
        "o.close()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- GAN pools: the fallback's checkpoint is checked at initialisation ---------------------


@pytest.fixture(scope="module")
def gan_pool(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_of: Callable[[str, int], Path]
) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("gan")
    good, other = checkpoint_of("convnet", 3), checkpoint_of("convnet", 1)
    build_pool(tmp / "p", model="convnet", checkpoint=good, events=1, nintra=2)
    return tmp / "p", good, other


@pytest.mark.slow
def test_gan_fallback_checks_and_bit_identity(
    gan_pool: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, good, other = gan_pool
    with pytest.raises(CheckpointMismatchError, match="not the one pool"):
        PoolOverlay(pool, checkpoint=other)
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        PoolOverlay(pool, checkpoint=tmp_path / "nope.pt")
    PoolOverlay(pool, on_exhausted="reuse").close()  # no fallback: no checkpoint needed
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingDependencyError, match="needs PyTorch"):
        PoolOverlay(pool, checkpoint=good)
    monkeypatch.undo()
    # the path recorded in the pool is used when none is given; $BGCACHE_CHECKPOINT after it
    moved = tmp_path / "moved.pt"
    moved.write_bytes(good.read_bytes())
    good.rename(tmp_path / "hidden.pt")
    try:
        with pytest.raises(CheckpointNotFoundError, match="recorded in the pool"):
            PoolOverlay(pool)
        with PoolOverlay(pool, checkpoint=moved, nintra=2) as overlay:
            overlay.next_event()
            fb = overlay.next_event()
            assert overlay.last is not None and overlay.last[0] == "generated"
            key = overlay.last[1]
    finally:
        (tmp_path / "hidden.pt").rename(good)
    # the pool's precision (auto: bf16-mixed on bf16 hardware, else fp32), as a build runs it
    precision = bgcache.open_pool(pool).content["precision"]
    gen = bgcache.load_model("convnet", good, nintra=2, precision=precision)
    assert fb == gen.events([key])[0]  # what a build would store for that key


# -- plan -----------------------------------------------------------------------------------


def test_plan_counts_match_what_the_overlay_does(pool_path: Path) -> None:
    from bgcache.overlay import plan_jobs

    plan = plan_jobs(pool_path, njobs=3, events_per_job=15, seed=8)
    assert plan["demand"] == 45 and plan["pool_events"] == 40
    assert [j["share_events"] for j in plan["jobs"]] == [13, 13, 14]
    assert [j["generated"] for j in plan["jobs"]] == [2, 2, 1]
    assert plan["events_to_add"] == 5
    assert plan["seconds_per_generated_event"] is not None  # recorded by the builds
    for j in plan["jobs"]:
        _, sources, overlay = draw(pool_path, 15, seed=8, job=j["job"], njobs=3)
        assert overlay.stats.from_pool == j["from_pool"]
        assert overlay.stats.generated == j["generated"]
        first = open_pool(pool_path).position(*sources[0][1])
        assert first == j["start_position"]


def test_plan_cli(cli: object, pool_path: Path) -> None:
    import json

    result = cli("plan", str(pool_path), "--jobs", "4", "--events-per-job", "12")  # type: ignore[operator]
    assert result.exit_code == 0, result.stderr
    assert "4 jobs x 12 events = 48 needed" in result.stdout
    assert "build 8 more events into the pool" in result.stdout
    out = json.loads(cli("plan", str(pool_path), "-j", "2", "-n", "5", "--json").stdout)  # type: ignore[operator]
    assert out["generated"] == 0 and out["from_pool"] == 10
    bad = cli("plan", str(pool_path), "-j", "2", "-n", "5", "--on-exhausted", "loop")  # type: ignore[operator]
    assert bad.exit_code == 2 and "'--on-exhausted': 'loop' is not a policy" in bad.stderr


def test_numpy_integers_are_accepted_for_job_and_njobs(tmp_path: Path) -> None:
    """Seeds accept integers of every kind; job and njobs do too (and become ints)."""
    import numpy as np

    build_pool(tmp_path / "p", model="synthetic", events=16, block_events=8)
    a = PoolOverlay(tmp_path / "p", seed=np.int64(3), job=np.int32(1), njobs=np.uint8(2))
    with a, PoolOverlay(tmp_path / "p", seed=3, job=1, njobs=2) as b:
        assert (a.job, a.njobs) == (1, 2) and type(a.job) is int
        assert [a.next_event() for _ in range(10)] == [b.next_event() for _ in range(10)]
