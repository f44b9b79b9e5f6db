"""The batched GPU build path: forward passes of ``batch_events`` events, padding, hit
extraction on the device, recorded batch size.

The same code runs with ``device="cpu"`` here (padding switched on, as on a GPU); tests
marked ``gpu`` run where a CUDA device is present and are skipped elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bgcache import open_pool  # noqa: E402
from bgcache.build import build_pool  # noqa: E402
from bgcache.errors import PoolMismatchError, UsageError  # noqa: E402
from bgcache.geometry import IMAGE_SHAPE, N_SENSORS  # noqa: E402
from bgcache.hits import SparseEvent  # noqa: E402
from bgcache.models import _torch as tm  # noqa: E402
from bgcache.models import load_model  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _random_charges(n_events: int, seed: int, occupancy: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_events * N_SENSORS, *IMAGE_SHAPE[1:]), np.uint8)
    fired = rng.random(dense.shape) < occupancy
    dense[fired] = rng.integers(1, 256, int(fired.sum()), dtype=np.uint8)
    return dense


@pytest.mark.parametrize("n_events", [1, 3])
def test_sparse_events_equal_dense_extraction(n_events: int) -> None:
    dense = _random_charges(n_events, seed=n_events)
    dense[:N_SENSORS] = 0  # an empty first event
    events = tm.sparse_events(torch.from_numpy(dense), n_events)
    assert len(events) == n_events
    assert events[0].n_hits == 0
    for i, ev in enumerate(events):
        want = SparseEvent.from_dense(dense[i * N_SENSORS : (i + 1) * N_SENSORS])
        assert ev == want
        assert ev.charge.dtype == np.uint8 and ev.sensor.dtype == np.uint8
        # what the store needs: valid, unique, sorted columns
        SparseEvent(ev.sensor, ev.u, ev.v, ev.charge, validate=True)


def test_sparse_events_refuses_other_shapes() -> None:
    with pytest.raises(UsageError, match=r"charges must be uint8 of shape \(80, 250, 768\)"):
        tm.sparse_events(torch.zeros((40, 250, 768), dtype=torch.uint8), 2)
    with pytest.raises(UsageError, match="got float32"):
        tm.sparse_events(torch.zeros((40, 250, 768)), 1)


@pytest.mark.parametrize(
    ("value", "match"),
    [(0, r"in 1\.\.256, got 0"), (257, r"in 1\.\.256, got 257"), ("4", "must be an integer")],
)
def test_batch_events_is_checked(
    value: object, match: str, raw_checkpoints: dict[str, Path]
) -> None:
    with pytest.raises(UsageError, match=match):
        load_model("resnet", raw_checkpoints["resnet"], batch_events=value)  # type: ignore[arg-type]


def test_cpu_defaults_and_metadata(raw_checkpoints: dict[str, Path]) -> None:
    gen = load_model("resnet", raw_checkpoints["resnet"])
    assert gen.batch_events == 1 and gen.pad is False
    assert "batch_events" not in gen.metadata()  # on a CPU the content does not depend on it
    gen = load_model("resnet", raw_checkpoints["resnet"], batch_events=4)
    assert gen.batch_events == 4 and "batch_events=4" in repr(gen)


class _LabelRecorder(torch.nn.Module):
    """Stand-in for a conditional network: records the labels of each call and returns a
    tanh image that depends on the latent and the label, so misrouted labels show."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        self.calls.append(labels.tolist())
        level = torch.tanh(z[:, :1] + labels[:, None].float() / 40.0)
        return level.view(-1, 1, 1, 1).expand(-1, 1, 256, 768)


def test_conditional_batches_pass_sensor_labels_per_event(
    raw_checkpoints: dict[str, Path],
) -> None:
    gen = load_model("ieagan", raw_checkpoints["ieagan"], batch_events=3)
    gen.net = _LabelRecorder()
    gen.chunk = 8
    gen.pad = True
    keys = [(4, 0), (4, 1)]  # a short batch: padded to 3 events
    batched = gen.events(keys)
    assert len(gen.net.calls) == 3 * N_SENSORS // 8
    labels = [x for call in gen.net.calls for x in call]
    assert labels == list(range(N_SENSORS)) * 3
    gen.net.calls.clear()
    single = [gen.events([k])[0] for k in keys]
    assert batched == single


@pytest.mark.slow
def test_batched_forward_is_bit_identical_to_per_event_on_cpu(
    tmp_path: Path, demo_checkpoints: dict[str, Path]
) -> None:
    ckpt = demo_checkpoints["convnet"]
    ref = load_model("convnet", ckpt, nintra=2)
    gen = load_model("convnet", ckpt, nintra=2, batch_events=2)
    gen.pad = True  # as on a GPU: the last pass holds one key and one padding event
    keys = [(9, 0), (9, 1), (9, 2)]
    batched = gen.events(keys)
    assert batched[0] == ref.events([keys[0]])[0]
    assert batched[2] == SparseEvent.from_dense(ref.images(ref.latents(keys[2])))
    assert batched[0] != batched[1]
    # a build in passes of 2 events holds the same events, and records no batch on a CPU
    build_pool(
        tmp_path / "p",
        model="convnet",
        checkpoint=ckpt,
        seed=9,
        events=3,
        block_events=2,
        batch_events=2,
        nintra=2,
        precision="fp32",  # the reference above is fp32 (auto may run bf16-mixed here)
    )
    pool = open_pool(tmp_path / "p")
    assert "batch_events" not in pool.record["content"]
    assert [pool.event_by_key(9, i) for i in range(3)] == batched


# -- on a CUDA device -----------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_cuda_build_is_independent_of_grouping_and_records_its_batch(
    tmp_path: Path,
    demo_checkpoints: dict[str, Path],
    pool_files: Callable[[object], dict[str, bytes]],
) -> None:
    ckpt = demo_checkpoints["convnet"]
    common = {"model": "convnet", "checkpoint": ckpt, "seed": 3, "block_events": 4}
    build_pool(tmp_path / "one", events=10, device="cuda", batch_events=3, **common)  # type: ignore[arg-type]
    # two complete blocks first (a short block would stay beside its extension)
    build_pool(tmp_path / "two", events=8, device="cuda", batch_events=3, **common)  # type: ignore[arg-type]
    # the resume keeps the recorded batch of the pool without being told
    build_pool(tmp_path / "two", events=10, device="cuda", **common)  # type: ignore[arg-type]
    one, two = open_pool(tmp_path / "one"), open_pool(tmp_path / "two")
    assert one.record["content"]["batch_events"] == 3
    assert one.record["content"]["device_type"] == "cuda"
    assert [one[i] for i in range(10)] == [two[i] for i in range(10)]
    assert pool_files(tmp_path / "one") == pool_files(tmp_path / "two")
    with pytest.raises(PoolMismatchError, match="batch_events"):
        build_pool(tmp_path / "one", events=12, device="cuda", batch_events=4, **common)  # type: ignore[arg-type]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_events_are_close_to_cpu_fp32(
    precision: str, demo_checkpoints: dict[str, Path]
) -> None:
    keys = [(1, i) for i in range(4)]
    cpu = load_model("convnet", demo_checkpoints["convnet"]).events(keys)
    gpu = load_model(
        "convnet", demo_checkpoints["convnet"], device="cuda", precision=precision
    ).events(keys)
    for a, b in zip(cpu, gpu, strict=True):
        da, db = a.to_dense().astype(int), b.to_dense().astype(int)
        differ = (da != db).mean()
        # bf16 changed 3.5e-3 of the pixels on a CPU (docs/performance.md)
        limit = 1e-4 if precision == "fp32" else 1e-2
        assert differ < limit, f"{differ:.2e} of the pixels differ from the CPU fp32 result"


@pytest.mark.gpu
@needs_cuda
def test_cuda_auto_and_bf16_mixed(demo_checkpoints: dict[str, Path]) -> None:
    """On CUDA, auto follows the compute capability; bf16-mixed keeps the hits of CPU fp32
    within 0.3 % on the same keys, and records the GPU's class."""
    import torch

    from bgcache.models.precision import GATE_PASSED

    major, _ = torch.cuda.get_device_capability()
    gen = load_model("convnet", demo_checkpoints["convnet"], device="cuda", precision="auto")
    want = "bf16-mixed" if major >= 8 and "bf16-mixed" in GATE_PASSED["convnet"] else "fp32"
    assert gen.precision == want
    keys = [(1, i) for i in range(4)]
    cpu = load_model("convnet", demo_checkpoints["convnet"]).events(keys)
    mixed = load_model(
        "convnet", demo_checkpoints["convnet"], device="cuda", precision="bf16-mixed"
    )
    assert mixed.metadata()["device_class"].startswith("cuda-sm")
    gpu = mixed.events(keys)
    ratio = sum(e.n_hits for e in gpu) / sum(e.n_hits for e in cpu)
    assert abs(ratio - 1) < 0.003, ratio
