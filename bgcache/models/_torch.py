"""GAN generators on PyTorch: checkpoint reading and validation, post-processing,
and the :class:`TorchGenerator` returned by :func:`bgcache.models.load_model`.

This module imports torch at import time; nothing outside ``bgcache.models`` imports it
except through :func:`import_torch` or the model loaders.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bgcache.errors import (
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    DeviceError,
    DeviceMemoryError,
    MissingDependencyError,
    UsageError,
)
from bgcache.geometry import CROP_START, N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.models import GAN_MODELS, file_sha256, get_spec, validate_threads
from bgcache.models._layers import Staged
from bgcache.models.precision import (
    MIXED_FP32_STAGES,
    REDUCED_PRECISIONS,
    DeviceCapabilities,
    check_precision,
    cpu_capabilities,
    cuda_capabilities,
    resolve_precision,
)
from bgcache.seeding import EventKey, as_keys, event_latents, seed_from_string


def import_torch() -> Any:
    """Import torch or raise :class:`MissingDependencyError` with an install hint."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise MissingDependencyError(
            "GAN models need PyTorch, which is not installed: pip install 'bgcache[gan]' "
            "(CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None


import_torch()
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

#: Hit threshold on the tanh output: below it a pixel has charge 0.
#: convnet/resnet: 256**((y+1)/2) - 1 >= 1  <=>  y >= -0.75; ieagan: noise cut y > -0.26.
HIT_THRESHOLD = {"convnet": -0.75, "resnet": -0.75, "ieagan": -0.26}
#: ieagan's noise cut: tanh outputs <= this are set to -1 before the charge transform.
IEAGAN_NOISE_CUT = -0.26

ARCHITECTURE_VERSION = {
    "convnet": "basf2-convnet-1",
    "resnet": "basf2-resnet-1",
    "ieagan": "basf2-ieagan-1",
}


def _model_classes(name: str) -> tuple[type[nn.Module], Callable[[Any], nn.Module]]:
    if name == "convnet":
        from bgcache.models.convnet import ConvNet, FastConvNet

        return ConvNet, FastConvNet
    if name == "resnet":
        from bgcache.models.resnet import FastResNet, ResNet

        return ResNet, FastResNet
    if name == "ieagan":
        from bgcache.models.ieagan import IEAGAN, FastIEAGAN

        return IEAGAN, FastIEAGAN
    raise UsageError(f"{name!r} is not a GAN model; GAN models: {', '.join(GAN_MODELS)}")


def build_plain(name: str, device: str | None = None) -> nn.Module:
    """A fresh plain (reference) network of a GAN model, in eval mode."""
    cls, _ = _model_classes(name)
    if device == "meta":
        with torch.device("meta"):
            return cls().eval()
    return cls().eval()


@functools.cache
def expected_layout(name: str) -> Mapping[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of a model's state_dict (built on the meta device once:
    ieagan takes ~1.5 s to build, and a mismatch report consults every model twice)."""
    sd = build_plain(name, "meta").state_dict()
    return types.MappingProxyType({k: (tuple(v.shape), v.dtype) for k, v in sd.items()})


# -- checkpoint files ------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a plain state_dict file with ``weights_only=True``.

    Raises:
        CheckpointNotFoundError: the file does not exist.
        CheckpointFormatError: not a torch file, truncated, or not a state_dict.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointNotFoundError(
            f"checkpoint {str(p)!r} does not exist: pass the path of a model state_dict "
            "(e.g. made by 'bgcache checkpoint init')"
        )
    if p.is_dir():
        raise CheckpointFormatError(
            f"checkpoint {str(p)!r} is a directory, expected a state_dict file"
        )
    with p.open("rb") as f:
        head = f.read(4)
    is_zip = head.startswith(b"PK\x03\x04")
    is_legacy = head[:1] == b"\x80"  # pickle protocol marker of torch's legacy format
    if not (is_zip or is_legacy):
        raise CheckpointFormatError(
            f"checkpoint {str(p)!r} is not a PyTorch checkpoint (it starts with {head!r}): "
            "expected a state_dict saved with torch.save"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on damaged input; all mean "unreadable"
        if is_zip:
            raise CheckpointFormatError(
                f"checkpoint {str(p)!r} is truncated or damaged ({_short(exc)}): copy it again"
            ) from None
        raise CheckpointFormatError(
            f"checkpoint {str(p)!r} cannot be read as a PyTorch checkpoint ({_short(exc)})"
        ) from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(
            f"checkpoint {str(p)!r} holds a {type(obj).__name__}, not a state_dict of tensors"
        )
    return obj  # type: ignore[return-value]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def layout_problems(state: Mapping[str, Tensor], name: str) -> list[str]:
    """Differences between a state_dict and a model's layout (empty if it matches)."""
    want = expected_layout(name)
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    wrong = [
        f"{k}: file has {list(state[k].shape)} {str(state[k].dtype).removeprefix('torch.')}, "
        f"model expects {list(want[k][0])} {str(want[k][1]).removeprefix('torch.')}"
        for k in want
        if k in state and (tuple(state[k].shape) != want[k][0] or state[k].dtype != want[k][1])
    ]
    if wrong:
        problems.append(
            f"{len(wrong)} shape/dtype mismatches ({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''})"
        )
    return problems


def _first(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def guess_model(state: Mapping[str, Tensor]) -> str | None:
    """The GAN model whose layout a state_dict matches exactly, else the closest by key names."""
    best, best_score = None, 0.0
    for name in GAN_MODELS:
        if not layout_problems(state, name):
            return name
        want = set(expected_layout(name))
        score = len(want & set(state)) / len(want | set(state))
        if score > best_score:
            best, best_score = name, score
    return best if best_score > 0.5 else None


def check_layout(state: Mapping[str, Tensor], name: str, path: str | Path) -> None:
    """Raise :class:`CheckpointMismatchError` if ``state`` does not fit model ``name``."""
    problems = layout_problems(state, name)
    if not problems:
        return
    other = guess_model(state)
    hint = (
        f"; it looks like a {other!r} checkpoint: use --model {other}"
        if other and other != name
        else "; is it a checkpoint of this model?"
    )
    raise CheckpointMismatchError(
        f"checkpoint {str(path)!r} does not fit model {name!r}: {'; '.join(problems)}{hint}"
    )


def demo_metadata(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """bgcache's record in a demo checkpoint (empty for real payloads)."""
    meta = getattr(state, "_metadata", None) or {}
    record = meta.get("bgcache", {}) if isinstance(meta, Mapping) else {}
    return dict(record) if isinstance(record, Mapping) else {}


# -- post-processing -------------------------------------------------------------------


def postprocess(y: Tensor, name: str, *, truncate: bool = True) -> Tensor:
    """Charges (uint8, (N, 250, 768)) from tanh outputs (N, 1, 256, 768), as DESIGN 2.

    convnet/resnet: x = clamp((y + 1) / 2, 0, 1); charge = clamp(256**x - 1, 0, 255),
    truncated. ieagan: y <= -0.26 set to -1 first, and x is not clamped. Rows 3..252 kept.
    ``truncate=False`` returns the float32 charge before truncation (for diagnostics).
    """
    x = y[:, 0, CROP_START : CROP_START + N_U, :]
    if name == "ieagan":
        x = torch.where(x > IEAGAN_NOISE_CUT, x, torch.full_like(x, -1.0))
        x = x.mul(0.5).add_(0.5)
    else:
        x = x.mul(0.5).add_(0.5).clamp_(0.0, 1.0)
    x = torch.pow(256.0, x).sub_(1.0).clamp_(0.0, 255.0)
    return x.to(torch.uint8) if truncate else x


# -- the generator -----------------------------------------------------------------------

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The key whose first :data:`CALIBRATION_IMAGES` latents calibrate bf16-mixed (the mean
#: input of each convolution, run in float32 at load): fixed, so an event stays a pure
#: function of (model, checkpoint, options, precision, key) on a device class.
CALIBRATION_KEY = EventKey(seed_from_string("bgcache bf16-mixed calibration"), 0)
CALIBRATION_IMAGES = 4

#: Events per forward pass on a CUDA device unless ``batch_events`` says otherwise.
CUDA_BATCH_EVENTS = 8
#: Largest ``batch_events`` accepted (8,192 images per forward pass).
MAX_BATCH_EVENTS = 256
_PIXELS_PER_EVENT = N_SENSORS * PIXELS_PER_SENSOR


@dataclass
class _Loaded:
    plain: nn.Module
    sha256: str
    demo: dict[str, Any]


class TorchGenerator:
    """A loaded GAN generator.

    Use :func:`bgcache.models.load_model` to make one. ``images(latents)`` maps latents
    (40, latent_dim) to uint8 charges (40, 250, 768); ``events(keys)`` draws the latents of
    each key from its counter-based stream and returns sparse events.

    ``events`` runs forward passes of ``batch_events`` events (40 images each); on a GPU a
    shorter group of keys is padded with zero latents, so every pass has the same shape and
    an event's content does not depend on how keys are grouped into calls, on the last
    partial batch, on shards or on the resume point. On a CPU the network runs each pass in
    fixed chunks of a few images, so the content does not depend on ``batch_events`` either
    (tested bit for bit). On a CUDA device the whole pass is one batch and cuDNN may choose
    kernels by batch shape: there ``batch_events`` (default 8) is part of the content and
    recorded in :meth:`metadata`. Hits are extracted on the device (``nonzero`` on the
    charges), so only hits, not dense images, cross to the host, through pinned memory.
    """

    def __init__(
        self,
        name: str,
        checkpoint: str | Path,
        *,
        device: str = "cpu",
        optimize: bool = True,
        nintra: int = 1,
        ninter: int = 1,
        precision: str = "fp32",
        batch_events: int | None = None,
    ) -> None:
        spec = get_spec(name)
        self.name = name
        self.latent_dim = spec.latent_dim
        self.conditional = spec.conditional
        self.nintra, self.ninter = validate_threads(nintra, ninter)
        self.optimize = bool(optimize)
        self.device = _parse_device(device)
        #: what the device offers reduced precision (its class is recorded with one)
        self.capabilities = device_capabilities(self.device)
        self.precision, self.precision_reason = resolve_precision(
            check_precision(precision), name, self.capabilities, optimize=self.optimize
        )
        if self.precision == "bf16-mixed" and not self.optimize:
            raise UsageError(
                "precision bf16-mixed runs the fast path's stages in their own types: "
                "drop --no-optimize, or use fp32 (the plain path's reference) or bf16"
            )
        self.batch_events = _batch_events(batch_events, self.device)
        #: pad short batches to batch_events events; not needed on a CPU, where the forward
        #: shape is a fixed chunk of images whatever the batch (tests switch it on there)
        self.pad = self.device.type != "cpu"
        _set_threads(self.nintra, self.ninter)
        if self.device.type == "cuda":
            _configure_cuda()
        self.checkpoint_path = str(Path(checkpoint).resolve())
        state = read_state_dict(checkpoint)
        check_layout(state, name, checkpoint)
        self.checkpoint_sha256 = file_sha256(checkpoint)
        self.demo = demo_metadata(state)
        self.untrained = bool(self.demo.get("untrained", False))
        plain = build_plain(name)
        plain.load_state_dict(state, strict=True)
        plain.requires_grad_(False)
        _, fast_cls = _model_classes(name)
        net = fast_cls(plain) if self.optimize else plain
        net = net.to(self.device)
        # On CPU the fast path runs an event in chunks of a few images, which keeps the
        # large late-stage tensors cache-sized; images are independent in eval mode. On a
        # GPU a forward pass is the whole batch (None: no chunking).
        self.chunk: int | None = (
            getattr(net, "cpu_chunk", N_SENSORS) if self.device.type == "cpu" else None
        )
        fmt: torch.memory_format | None = getattr(net, "cpu_memory_format", None)
        if self.device.type == "cpu" and self.precision == "bf16-mixed":
            # oneDNN's bf16 convolutions run in NHWC (measured: 1.3-1.5x for resnet and
            # ieagan); fp32 keeps each model's format, which its pools' pixels depend on
            fmt = torch.channels_last
        if self.device.type == "cpu" and fmt is not None:
            # nn.Module.to accepts memory_format at run time; torch's stubs omit it
            net = net.to(memory_format=fmt)  # type: ignore[call-overload]
        if self.precision == "bf16-mixed":
            assert isinstance(net, Staged)  # every fast network is (and mixed needs the fast path)
            bulk = {s: torch.bfloat16 for s in net.STAGES if s not in MIXED_FP32_STAGES[name]}
            net.set_stage_dtypes(bulk, self.calibration_means(net))
            self.dtype = torch.float32  # the input stage runs in float32
        else:
            self.dtype = _DTYPES[self.precision]
            net = net.to(self.dtype)
            for mod in net.modules():  # modules that fold in float32 masters: this type too
                if hasattr(mod, "compute_dtype"):
                    setattr(mod, "compute_dtype", self.dtype)  # noqa: B010
        self.net = net.eval()

    def calibration_means(self, net: Staged) -> dict[str, Tensor]:
        """Each convolution's mean input (``Staged.conv_input_means``) while float32 ``net``
        runs the first :data:`CALIBRATION_IMAGES` latents of :data:`CALIBRATION_KEY`."""
        z = torch.as_tensor(self.latents(CALIBRATION_KEY)[:CALIBRATION_IMAGES]).to(self.device)
        if self.conditional:
            labels = torch.arange(CALIBRATION_IMAGES, device=self.device)
            return net.conv_input_means(lambda: net(z, labels))
        return net.conv_input_means(lambda: net(z))

    def _forward(self, z: Tensor) -> Tensor:
        """Tanh output (40 n, 1, 256, 768) float32 for the latents (40 n, latent_dim) of n
        events (sensor labels 0..39 repeated)."""
        with torch.inference_mode():
            z = z.to(self.device, self.dtype, non_blocking=True)
            if self.chunk is None or self.chunk >= z.shape[0]:
                out: Tensor = self.net(z).float()
                return out
            parts = []
            for start in range(0, z.shape[0], self.chunk):
                zz = z[start : start + self.chunk]
                if self.conditional:
                    labels = torch.arange(start, start + zz.shape[0], device=self.device)
                    parts.append(self.net(zz, labels % N_SENSORS).float())
                else:
                    parts.append(self.net(zz).float())
            return torch.cat(parts)

    def images(self, latents: np.ndarray | Tensor) -> np.ndarray:
        """Charges (uint8 (40, 250, 768)) of one event from its latents (40, latent_dim)."""
        z = torch.as_tensor(np.asarray(latents, dtype=np.float32))
        if z.shape != (N_SENSORS, self.latent_dim):
            raise UsageError(
                f"{self.name} takes latents of shape ({N_SENSORS}, {self.latent_dim}), got {tuple(z.shape)}"
            )
        with torch.inference_mode():
            out = postprocess(self._forward(z), self.name)
        return out.cpu().numpy()

    def latents(self, key: EventKey | tuple[int, int]) -> np.ndarray:
        """The latents (40, latent_dim) of one event key."""
        return event_latents(key, N_SENSORS, self.latent_dim)

    def events(self, keys: Sequence[EventKey | tuple[int, int]]) -> list[SparseEvent]:
        """One sparse event per key, in forward passes of ``batch_events`` events."""
        keys = as_keys(keys)
        out: list[SparseEvent] = []
        for start in range(0, len(keys), self.batch_events):
            out.extend(self._batch(keys[start : start + self.batch_events]))
        return out

    def _batch(self, keys: Sequence[EventKey]) -> list[SparseEvent]:
        """One forward pass of the keys (at most ``batch_events``); with ``pad`` (on a GPU)
        zero latents fill it up to exactly ``batch_events`` events."""
        n = len(keys)
        rows = (self.batch_events if self.pad else n) * N_SENSORS
        z = torch.zeros((rows, self.latent_dim), dtype=torch.float32)
        zn = z.numpy()
        for i, key in enumerate(keys):
            zn[i * N_SENSORS : (i + 1) * N_SENSORS] = self.latents(key)
        if self.device.type == "cuda":
            z = z.pin_memory()  # the copy to the device in _forward is then asynchronous
        try:
            with torch.inference_mode():
                charges = postprocess(self._forward(z)[: n * N_SENSORS], self.name)
                return sparse_events(charges, n)
        except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError from torch 2.5 on)
            raise DeviceMemoryError(
                f"{self.name}: a forward pass of {self.batch_events} events does not fit into "
                f"the memory of {self.device}: use a smaller --batch-events (in a new pool: on "
                "a GPU it is part of the content)"
            ) from None

    def metadata(self) -> dict[str, Any]:
        """What a pool records about this generator's content."""
        return {
            "model": self.name,
            "architecture": ARCHITECTURE_VERSION[self.name],
            "latent_dim": self.latent_dim,
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint_path": self.checkpoint_path,
            "untrained": self.untrained,
            "precision": self.precision,
            "device_type": self.device.type,
            # a reduced precision's pixels depend on the kernel family (see precision.py)
            **(
                {"device_class": self.capabilities.device_class}
                if self.precision in REDUCED_PRECISIONS
                else {}
            ),
            "optimize": self.optimize,
            "hit_threshold": HIT_THRESHOLD[self.name],
            "torch": torch.__version__,
            "physics_model": not self.untrained,
            # content on a CUDA device depends on the forward-pass shape (see the class doc)
            **({"batch_events": self.batch_events} if self.device.type == "cuda" else {}),
        }

    def __repr__(self) -> str:
        flag = ", UNTRAINED" if self.untrained else ""
        return f"TorchGenerator({self.name!r}, device={self.device}, optimize={self.optimize}, precision={self.precision}, batch_events={self.batch_events}{flag})"


def sparse_events(charges: Tensor, n_events: int) -> list[SparseEvent]:
    """Sparse events from the charges (uint8 (40 n, 250, 768), on any device) of n events.

    The fired pixels are found where the charges are (on a GPU: there), and only the hits
    (packed index int32, charge uint8, counts per event) are copied to the host, through
    pinned memory when the charges are on a CUDA device. ``nonzero`` returns positions in
    row-major order, which is the (event, sensor, u, v) order the store wants.
    """
    if charges.shape != (n_events * N_SENSORS, N_U, N_V) or charges.dtype != torch.uint8:
        raise UsageError(
            f"charges must be uint8 of shape ({n_events * N_SENSORS}, {N_U}, 768), "
            f"got {str(charges.dtype).removeprefix('torch.')} {tuple(charges.shape)}"
        )
    flat = charges.reshape(-1)
    pos = torch.nonzero(flat).squeeze(1)
    event = torch.div(pos, _PIXELS_PER_EVENT, rounding_mode="floor")
    parts = [
        torch.bincount(event, minlength=n_events),
        (pos - event * _PIXELS_PER_EVENT).to(torch.int32),
        flat[pos],
    ]
    if charges.device.type == "cuda":
        host = [torch.empty(p.shape, dtype=p.dtype, pin_memory=True) for p in parts]
        for h, p in zip(host, parts, strict=True):
            h.copy_(p, non_blocking=True)
        torch.cuda.current_stream(charges.device).synchronize()
        parts = host
    counts, index, charge = (p.cpu().numpy() for p in parts)
    index = index.view(np.uint32)
    offsets = np.zeros(n_events + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return [
        SparseEvent.from_pixel_index(index[a:b], charge[a:b], validate=False)
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    ]


def _batch_events(value: int | None, device: torch.device) -> int:
    if value is None:
        return CUDA_BATCH_EVENTS if device.type == "cuda" else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"batch_events must be an integer, got {value!r}")
    if not 1 <= value <= MAX_BATCH_EVENTS:
        raise UsageError(f"batch_events must be in 1..{MAX_BATCH_EVENTS}, got {value}")
    return int(value)


def _configure_cuda() -> None:
    """fp32 means fp32 (no TF32), and cuDNN picks kernels deterministically."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _parse_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(
            f"device {device!r} is not a torch device: use 'cpu' or 'cuda[:N]'"
        ) from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r} is not supported: use 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device {device!r} requested but no CUDA GPU is available here: use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise DeviceError(
            f"device {device!r} does not exist: this machine has {n} CUDA device(s), "
            f"cuda:0..cuda:{n - 1}"
        )
    return dev


def device_capabilities(device: str | torch.device = "cpu") -> DeviceCapabilities:
    """What a device offers reduced precision, from what torch reports of it.

    A CPU: AMX tiles (usable only once the kernel grants them: ``torch.cpu._init_amx``),
    AVX512-BF16, AVX-512, AVX2, capped by ``ONEDNN_MAX_CPU_ISA`` (``DNNL_MAX_CPU_ISA``)
    as oneDNN caps itself. A CUDA GPU: its compute capability.
    """
    dev = _parse_device(str(device))
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return cuda_capabilities(major, minor, torch.cuda.get_device_name(dev))
    return cpu_capabilities(**_cpu_flags(), max_isa=_max_isa())


@functools.cache
def _cpu_flags() -> dict[str, bool]:
    cpu = torch.cpu

    def has(probe: str) -> bool:
        fn = getattr(cpu, probe, None)
        try:
            return bool(fn()) if fn is not None else False
        except RuntimeError:
            return False

    return {
        "amx": has("_is_amx_tile_supported") and has("_init_amx"),
        "avx512_bf16": has("_is_avx512_bf16_supported"),
        "avx512": has("_is_avx512_supported"),
        "avx2": has("_is_avx2_supported"),
    }


def _max_isa() -> str | None:
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or None


def _set_threads(nintra: int, ninter: int) -> None:
    torch.set_num_threads(nintra)
    if torch.get_num_interop_threads() != ninter:
        # fixed once torch ran parallel work; intra-op threads are what matter here
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(ninter)


def load_gan(
    checkpoint: str | Path | None,
    *,
    name: str,
    device: str = "cpu",
    optimize: bool = True,
    nintra: int = 1,
    ninter: int = 1,
    precision: str = "fp32",
    batch_events: int | None = None,
) -> TorchGenerator:
    """Registry loader of the GAN models (see :func:`bgcache.models.load_model`)."""
    if checkpoint is None:
        raise UsageError(
            f"model {name!r} needs a checkpoint: pass --checkpoint FILE "
            f"(make an untrained demo one with 'bgcache checkpoint init --model {name} -o {name}.pt')"
        )
    return TorchGenerator(
        name,
        checkpoint,
        device=device,
        optimize=optimize,
        nintra=nintra,
        ninter=ninter,
        precision=precision,
        batch_events=batch_events,
    )
