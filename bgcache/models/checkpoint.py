"""Checkpoint files: inspecting them (:func:`checkpoint_info`) and making untrained,
calibrated demo checkpoints (:func:`init_checkpoint`).

No trained weights are available outside the Belle II conditions database. A demo
checkpoint is a network with weights drawn from a fixed seed whose batch-norm statistics
are set from one forward pass and whose last layer is scaled and shifted so that the
output has the requested occupancy and a realistic fired-pixel mean charge. It is NOT a
physics model, and the file says so: its state_dict ``_metadata`` carries a ``bgcache``
record with ``untrained: True`` (``_metadata`` is ignored by ``load_state_dict``, so the
file still loads with ``strict=True`` anywhere, basf2 included).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bgcache._version import __version__
from bgcache.errors import UsageError
from bgcache.models import GAN_MODELS, file_sha256, get_spec
from bgcache.seeding import event_latents, validate_seed

#: Fired-pixel mean charge (ADU) demo checkpoints are calibrated to (Geant4 reference: 21.6).
DEMO_MEAN_CHARGE = 21.6
#: Seed of the calibration latents (independent of the weight seed).
_CALIBRATION_SEED = 0x6267_6361_6368_6521  # "bgcache!"


@dataclass
class CheckpointInfo:
    """What :func:`checkpoint_info` finds in a checkpoint file."""

    path: str
    sha256: str
    size_bytes: int
    model: str | None
    matches: bool
    n_parameters: int
    n_entries: int
    untrained: bool
    demo: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def checkpoint_info(path: str | Path, *, model: str | None = None) -> CheckpointInfo:
    """Describe a checkpoint: the model it fits, sha256, parameter count, untrained flag.

    Args:
        path: the state_dict file.
        model: check against this model; by default the matching GAN model is found.

    Raises:
        CheckpointNotFoundError, CheckpointFormatError: unreadable file.
        UnknownModelError: ``model`` is not registered.
    """
    from bgcache.models import _torch

    if model is not None and model not in GAN_MODELS:
        get_spec(model)  # unknown names raise with a suggestion
        raise UsageError(
            f"model {model!r} takes no checkpoint; GAN models: {', '.join(GAN_MODELS)}"
        )
    state = _torch.read_state_dict(path)
    target = model or _torch.guess_model(state)
    problems = (
        _torch.layout_problems(state, target) if target else ["matches no known model layout"]
    )
    demo = _torch.demo_metadata(state)
    n_params = sum(
        int(v.numel()) for k, v in state.items() if v.is_floating_point() and not _is_buffer(k)
    )
    return CheckpointInfo(
        path=str(Path(path).resolve()),
        sha256=file_sha256(path),
        size_bytes=Path(path).stat().st_size,
        model=target,
        matches=not problems,
        n_parameters=n_params,
        n_entries=len(state),
        untrained=bool(demo.get("untrained", False)),
        demo=demo,
        problems=problems,
    )


def _is_buffer(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf in {
        "running_mean",
        "running_var",
        "num_batches_tracked",
        "stored_mean",
        "stored_var",
        "u0",
        "sv0",
    }


def init_checkpoint(
    model: str,
    path: str | Path,
    *,
    occupancy: float = 0.009,
    seed: int = 0,
    overwrite: bool = False,
    mean_charge: float = DEMO_MEAN_CHARGE,
    progress: Callable[[str], None] | None = None,
) -> CheckpointInfo:
    """Write an untrained, deterministic, calibrated demo checkpoint.

    Args:
        model: a GAN model name.
        path: output file; its directory must exist.
        occupancy: target mean fraction of fired pixels, in (0, 0.2].
        seed: seed of the weights (same seed, same torch -> same file).
        overwrite: replace an existing file.
        mean_charge: target fired-pixel mean charge in ADU.
        progress: called with a line saying which step runs (the whole takes 20-90 s on a
            CPU): the network's normalisation layers one by one, then the output, the check
            on an independent event and the file.

    Returns:
        The :class:`CheckpointInfo` of the written file (its ``demo`` record holds the
        calibration and the occupancy measured on an independent event).
    """
    if model not in GAN_MODELS:
        get_spec(model)
        raise UsageError(
            f"model {model!r} takes no checkpoint; GAN models: {', '.join(GAN_MODELS)}"
        )
    seed = validate_seed(seed)
    if not (
        isinstance(occupancy, (int, float)) and 0 < occupancy <= 0.2 and math.isfinite(occupancy)
    ):
        raise UsageError(
            f"occupancy must be in (0, 0.2] (PXD background is ~0.009), got {occupancy!r}"
        )
    if not 1.0 < mean_charge < 200.0:
        raise UsageError(f"mean charge must be in (1, 200) ADU, got {mean_charge!r}")
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"output {str(out)!r} is a directory: give a file name such as {model}.pt")
    if not out.parent.exists():
        raise UsageError(f"output directory {str(out.parent)!r} does not exist: create it first")
    if not out.parent.is_dir():
        raise UsageError(
            f"output {str(out)!r}: {str(out.parent)!r} is a file, not a directory: "
            "write the checkpoint into a directory"
        )
    if out.exists() and not overwrite:
        raise UsageError(f"{str(out)!r} already exists: pass --force to replace it")

    from bgcache.models import _torch

    torch = _torch.import_torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
        net = _torch.build_plain(model)
    net.requires_grad_(False)
    z = torch.from_numpy(event_latents((_CALIBRATION_SEED, 0), 40, get_spec(model).latent_dim))
    say = progress or (lambda line: None)
    pre = _calibrate_norms(net, z, say)
    say("calibrating the output for occupancy and charge")
    scale, shift = _calibrate_output(pre, model, occupancy, mean_charge)
    _apply_output_calibration(net, model, scale, shift)
    say("measuring the occupancy on an independent event")

    # measure on an independent event, with the fast network
    _, fast_cls = _torch._model_classes(model)
    check_z = torch.from_numpy(
        event_latents((_CALIBRATION_SEED, 1), 40, get_spec(model).latent_dim)
    )
    with torch.inference_mode():
        charges = _torch.postprocess(fast_cls(net)(check_z), model).numpy()
    fired = charges[charges > 0]
    demo = {
        "untrained": True,
        "note": "untrained demo network calibrated for occupancy; NOT a physics model",
        "model": model,
        "seed": seed,
        "target_occupancy": float(occupancy),
        "target_mean_charge": float(mean_charge),
        "output_scale": float(scale),
        "output_shift": float(shift),
        "measured_occupancy": float((charges > 0).mean()),
        "measured_mean_charge": float(fired.mean()) if fired.size else 0.0,
        "bgcache": __version__,
        "torch": torch.__version__.split("+")[0],
    }
    say(f"writing {out}")
    state = OrderedDict((k, v.detach().clone().contiguous()) for k, v in net.state_dict().items())
    meta = getattr(net.state_dict(), "_metadata", None)
    state._metadata = OrderedDict(meta or {})  # type: ignore[attr-defined]
    state._metadata["bgcache"] = demo  # type: ignore[attr-defined]
    # Serialise in memory: torch.save to a path names the archive after the file, so the
    # bytes (and sha256) would depend on the file name. Then write atomically.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(out)
    finally:
        if Path(tmp).exists():
            Path(tmp).unlink()
    return checkpoint_info(out, model=model)


def _norm_layers(net: Any) -> list[Any]:
    from bgcache.models import _torch

    torch = _torch.import_torch()
    out = []
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d) or (
            hasattr(module, "stored_mean") and hasattr(module, "stored_var")
        ):
            out.append(module)
    return out


def _calibrate_norms(net: Any, z: Any, say: Callable[[str], None]) -> np.ndarray:
    """Set every batch norm's statistics to those of its input on the calibration batch.

    Pre-forward hooks fire in execution order, so each layer sees inputs already
    normalised by the calibrated layers before it; the pass's own output is therefore the
    calibrated network's pre-tanh output, returned (cropped rows, float64, flat).
    """
    from bgcache.models import _torch

    torch = _torch.import_torch()

    layers = _norm_layers(net)
    done = [0]

    def hook(module: Any, args: tuple[Any, ...]) -> None:
        done[0] += 1
        say(f"calibrating normalisation layer {done[0]} of {len(layers)}")
        # numpy's float64 reductions are single-threaded and deterministic; torch's
        # multi-threaded ones depend on the thread count, which would change the file
        x = args[0].detach().numpy()
        mean = torch.from_numpy(np.mean(x, axis=(0, 2, 3), dtype=np.float64))
        var = torch.from_numpy(np.var(x, axis=(0, 2, 3), dtype=np.float64))
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
        else:
            module.stored_mean.copy_(mean)
            module.stored_var.copy_(var)

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            pre: np.ndarray = net.pre_tanh(z)[:, 0, 3:253, :].double().numpy().ravel()
    finally:
        for h in handles:
            h.remove()
    return pre


def _calibrate_output(
    pre: np.ndarray, model: str, occupancy: float, mean_charge: float
) -> tuple[float, float]:
    """Scale a and shift b of the pre-tanh output o -> a*o + b giving the targets."""
    from bgcache.models import _torch

    threshold = math.atanh(_torch.HIT_THRESHOLD[model])
    # only the top of the distribution matters: keep a generous tail
    k = max(int(pre.size * min(4 * occupancy, 1.0)), 1000)
    tail = np.sort(np.partition(pre, pre.size - k)[pre.size - k :])
    q = float(np.quantile(pre, 1.0 - occupancy))
    fired = tail[tail > q]

    def mean_of(a: float) -> float:
        y = np.tanh(a * (fired - q) + threshold)
        x = (y + 1) / 2
        return float(np.mean(np.clip(256.0**x - 1, 0, 255).astype(np.int64)))

    lo, hi = 1e-4, 1e4
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if mean_of(mid) < mean_charge:
            lo = mid
        else:
            hi = mid
    a = math.sqrt(lo * hi)
    return a, threshold - a * q


def _apply_output_calibration(net: Any, model: str, scale: float, shift: float) -> None:
    from bgcache.models import _torch

    torch = _torch.import_torch()
    conv = net.final_conv()
    with torch.no_grad():
        if model == "ieagan":
            # spectral norm makes the conv weight scale-invariant: scale the ReLU input
            bn = net.output_layer[0]
            bn.gain.mul_(scale)
            bn.bias.mul_(scale)
        else:
            conv.weight.mul_(scale)
        conv.bias.mul_(scale).add_(shift)
