"""GAN generators: checkpoint compatibility, fast path == plain path, keys, errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bgcache.errors import (  # noqa: E402
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    UsageError,
)
from bgcache.models import GAN_MODELS, load_model  # noqa: E402
from bgcache.models import _torch as tm  # noqa: E402
from bgcache.models.checkpoint import checkpoint_info, init_checkpoint  # noqa: E402

LAYOUTS = json.loads((Path(__file__).parent / "data" / "checkpoint_layouts.json").read_text())[
    "models"
]


@pytest.mark.parametrize("name", GAN_MODELS)
def test_state_dict_layout_matches_belle2_payload(name: str) -> None:
    want = [(k, list(s), d) for k, s, d in LAYOUTS[name]["state_dict"]]
    sd = tm.build_plain(name, "meta").state_dict()
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert got == want
    n_params = sum(v.numel() for v in tm.build_plain(name, "meta").parameters())
    assert n_params == LAYOUTS[name]["n_parameters"]


@pytest.mark.parametrize("name", GAN_MODELS)
def test_raw_checkpoint_loads_strict_in_a_plain_module(
    name: str, raw_checkpoints: dict[str, Path]
) -> None:
    state = torch.load(raw_checkpoints[name], weights_only=True)
    tm.build_plain(name).load_state_dict(state, strict=True)
    info = checkpoint_info(raw_checkpoints[name])
    assert info.model == name and info.matches and not info.untrained
    assert info.n_parameters == LAYOUTS[name]["n_parameters"]
    assert info.n_entries == LAYOUTS[name]["n_state_dict_entries"]


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_model("convnet", tmp_path / "nope.pt")


def test_checkpoint_is_required() -> None:
    with pytest.raises(UsageError, match="needs a checkpoint"):
        load_model("resnet")


def test_not_a_torch_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointFormatError, match="not a PyTorch checkpoint"):
        load_model("convnet", bad)


def test_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match="is a directory"):
        load_model("convnet", tmp_path)


def test_truncated_checkpoint(tmp_path: Path, raw_checkpoints: dict[str, Path]) -> None:
    data = raw_checkpoints["resnet"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match="truncated or damaged"):
        load_model("resnet", cut)


def test_pickle_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointFormatError, match="not a state_dict"):
        load_model("convnet", path)


@pytest.mark.parametrize(
    ("model", "file_of"), [("resnet", "convnet"), ("convnet", "ieagan"), ("ieagan", "resnet")]
)
def test_checkpoint_of_another_model(
    model: str, file_of: str, raw_checkpoints: dict[str, Path]
) -> None:
    with pytest.raises(
        CheckpointMismatchError, match=rf"looks like a '{file_of}' checkpoint"
    ) as err:
        load_model(model, raw_checkpoints[file_of])
    assert "missing keys" in str(err.value)


def test_shape_mismatch_names_the_key(tmp_path: Path, raw_checkpoints: dict[str, Path]) -> None:
    state = torch.load(raw_checkpoints["convnet"], weights_only=True)
    state["features.4.weight"] = torch.zeros(256, 512, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(
        CheckpointMismatchError, match=r"features\.4\.weight: file has \[256, 512, 3, 3\]"
    ):
        load_model("convnet", path)
    info = checkpoint_info(path)
    assert info.model == "convnet" and not info.matches and info.problems


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nintra": 0}, "nintra must be an integer >= 1"),
        ({"ninter": -1}, "ninter must be an integer >= 1"),
        ({"nintra": 1.5}, "nintra must be an integer >= 1"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"device": "tpu"}, "device"),
    ],
    ids=["nintra0", "ninter-1", "nintra-float", "precision", "device"],
)
def test_bad_options(
    kwargs: dict[str, object], match: str, raw_checkpoints: dict[str, Path]
) -> None:
    with pytest.raises(UsageError, match=match):
        load_model("convnet", raw_checkpoints["convnet"], **kwargs)  # type: ignore[arg-type]


def test_init_checkpoint_refuses_bad_values_and_keeps_files(tmp_path: Path) -> None:
    existing = tmp_path / "keep.pt"
    existing.write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        init_checkpoint("convnet", existing)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(UsageError, match="occupancy must be in"):
        init_checkpoint("convnet", tmp_path / "x.pt", occupancy=0.0)
    with pytest.raises(UsageError, match="does not exist"):
        init_checkpoint("convnet", tmp_path / "no" / "x.pt")
    with pytest.raises(UsageError, match="takes no checkpoint"):
        init_checkpoint("synthetic", tmp_path / "x.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pt"]


def _tie_pixels_only(name: str, plain_y: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Pixels where the fast and plain uint8 images differ must be float-rounding ties:
    the plain float charge lies within 0.01 ADU of an integer (or y of ieagan's cut)."""
    differ = a != b
    y = torch.from_numpy(plain_y)
    charge = tm.postprocess(y, name, truncate=False).numpy()[differ]
    dist = np.abs(charge - np.round(charge))
    y_crop = plain_y[:, 0, 3:253, :][differ]
    at_cut = (
        np.abs(y_crop - tm.IEAGAN_NOISE_CUT) < 1e-4
        if name == "ieagan"
        else np.zeros_like(dist, bool)
    )
    assert np.all((dist < 0.01) | at_cut), (
        f"non-tie differences: {charge[(dist >= 0.01) & ~at_cut][:5]}"
    )
    assert differ.sum() <= 1e-5 * a.size, f"{differ.sum()} pixels differ"
    assert np.abs(a.astype(int) - b.astype(int))[differ & (a > 0) & (b > 0)].max(initial=0) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", GAN_MODELS)
def test_fast_path_equals_plain_path_on_full_size_images(
    name: str, demo_checkpoints: dict[str, Path]
) -> None:
    plain = load_model(name, demo_checkpoints[name], optimize=False, nintra=2)
    fast = load_model(name, demo_checkpoints[name], optimize=True, nintra=2)
    z = plain.latents((11, 0))
    forward, outputs = plain._forward, []  # the float output of images()' one plain pass

    def keep(x: torch.Tensor) -> torch.Tensor:
        outputs.append(forward(x))
        return outputs[-1]

    plain._forward = keep  # type: ignore[method-assign]
    a = plain.images(z)
    assert len(outputs) == 1
    plain_y = outputs[0].numpy()
    assert np.array_equal(a, tm.postprocess(torch.from_numpy(plain_y), name).numpy())
    b = fast.images(z)
    assert a.shape == b.shape == (40, 250, 768) and b.dtype == np.uint8
    occupancy = (b > 0).mean()
    assert 0.0005 < occupancy < 0.03, f"demo network occupancy {occupancy} is not realistic"
    _tie_pixels_only(name, plain_y, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", GAN_MODELS)
def test_events_are_deterministic_per_key(name: str, demo_checkpoints: dict[str, Path]) -> None:
    gen = load_model(name, demo_checkpoints[name])
    batch = gen.events([(5, 1), (-3, 0)])
    assert batch[0] != batch[1]
    # the event of a key in a batch is the image of that key alone (the same pass, sparse)
    alone = gen.images(gen.latents((-3, 0)))
    assert np.array_equal(batch[1].to_dense(), alone)
    meta = gen.metadata()
    assert meta["model"] == name and meta["untrained"] is True and meta["physics_model"] is False
    assert meta["checkpoint_sha256"] == tm.file_sha256(demo_checkpoints[name])


@pytest.mark.slow
def test_demo_checkpoint_is_marked_untrained_and_reproducible(
    tmp_path: Path, demo_checkpoints: dict[str, Path], checkpoint_of: Callable[[str, int], Path]
) -> None:
    """Marked untrained, loadable, its sha256 independent of the file's name; another seed
    makes another file (the same seed the same bytes: ``bgcache checkpoint init``'s test
    compares the command's file with this one)."""
    info = checkpoint_info(demo_checkpoints["convnet"])
    assert info.untrained and info.matches and info.demo["seed"] == 3
    assert 0.004 < info.demo["measured_occupancy"] < 0.02
    state = torch.load(demo_checkpoints["convnet"], weights_only=True)
    tm.build_plain("convnet").load_state_dict(state, strict=True)
    assert checkpoint_info(checkpoint_of("convnet", 1)).sha256 != info.sha256
    shutil.copy(demo_checkpoints["convnet"], tmp_path / "moved.pt")
    assert checkpoint_info(tmp_path / "moved.pt").sha256 == info.sha256
