"""Generator registry: names -> specs, and :func:`load_model`.

Built-in generators are ``convnet``, ``resnet`` and ``ieagan`` (PyTorch GANs whose
state_dicts match the Belle II conditions-database payloads) and ``synthetic`` (numpy
only, not a physics model). Third-party packages add generators through the entry-point
group ``bgcache.generators``; each entry point names a :class:`ModelSpec`.

Every generator object returned by :func:`load_model` has ``images(latents)`` (dense uint8
(40, 250, 768), GANs only), ``events(keys)`` (a list of :class:`~bgcache.hits.SparseEvent`,
one per key) and ``metadata()`` (what a pool must record about the content).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bgcache.errors import UnknownModelError, UsageError, did_you_mean
from bgcache.hits import SparseEvent
from bgcache.seeding import EventKey

ENTRY_POINT_GROUP = "bgcache.generators"


@runtime_checkable
class Generator(Protocol):
    """What every loaded generator provides."""

    name: str
    latent_dim: int

    def events(self, keys: Sequence[EventKey | tuple[int, int]]) -> list[SparseEvent]:
        """One sparse event per key; deterministic per key."""
        ...

    def metadata(self) -> dict[str, Any]:
        """Content-relevant settings a pool records (model, checkpoint sha256, precision...)."""
        ...


@dataclass(frozen=True)
class ModelSpec:
    """Description of a registered generator.

    Attributes:
        name: registry name.
        latent_dim: size of one latent vector (0 if the generator has none).
        conditional: whether each sensor image is conditioned on the sensor label.
        needs_torch: whether loading needs torch.
        needs_checkpoint: whether a checkpoint file is required.
        n_parameters: trainable parameters (0 for non-network generators).
        description: one line for ``bgcache models``.
        loader: ``"module:function"`` called as ``loader(checkpoint, **options)``.
        physics: False for generators that are not a physics model.
    """

    name: str
    latent_dim: int
    conditional: bool
    needs_torch: bool
    needs_checkpoint: bool
    n_parameters: int
    description: str
    loader: str
    physics: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self, checkpoint: str | Path | None = None, **options: Any) -> Generator:
        """Import the loader and build the generator."""
        module_name, _, func_name = self.loader.partition(":")
        func: Callable[..., Generator] = getattr(importlib.import_module(module_name), func_name)
        return func(checkpoint, **options)


_BUILTIN: dict[str, ModelSpec] = {
    "convnet": ModelSpec(
        name="convnet",
        latent_dim=96,
        conditional=False,
        needs_torch=True,
        needs_checkpoint=True,
        n_parameters=20_444_865,
        description="Belle II ConvNet GAN (PXDBackgroundGenerator_convnet payload)",
        loader="bgcache.models._torch:load_gan",
    ),
    "resnet": ModelSpec(
        name="resnet",
        latent_dim=96,
        conditional=False,
        needs_torch=True,
        needs_checkpoint=True,
        n_parameters=6_648_097,
        description="Belle II ResNet GAN (PXDBackgroundGenerator_resnet payload)",
        loader="bgcache.models._torch:load_gan",
    ),
    "ieagan": ModelSpec(
        name="ieagan",
        latent_dim=128,
        conditional=True,
        needs_torch=True,
        needs_checkpoint=True,
        n_parameters=11_676_449,
        description="IEA-GAN, sensor-conditional with relational label attention",
        loader="bgcache.models._torch:load_gan",
    ),
    "synthetic": ModelSpec(
        name="synthetic",
        latent_dim=0,
        conditional=False,
        needs_torch=False,
        needs_checkpoint=False,
        n_parameters=0,
        description="fast numpy generator following Geant4 reference statistics; NOT a physics model",
        loader="bgcache.models.synthetic:load_synthetic",
        physics=False,
    ),
}

GAN_MODELS = ("convnet", "resnet", "ieagan")


def _plugin_specs() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, ModelSpec):
            raise UsageError(
                f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} must name a "
                f"bgcache.models.ModelSpec, got {type(spec).__name__}"
            )
        specs.setdefault(spec.name, spec)
    return specs


def registered_models() -> dict[str, ModelSpec]:
    """All generators: the built-ins followed by entry-point plugins (built-ins win on clashes).

    Example:
        >>> list(registered_models())[:4]
        ['convnet', 'resnet', 'ieagan', 'synthetic']
    """
    out = dict(_BUILTIN)
    for name, spec in _plugin_specs().items():
        out.setdefault(name, spec)
    return out


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered generator.

    Raises:
        UnknownModelError: with the closest known name.

    Example:
        >>> get_spec("resnet").latent_dim
        96
        >>> get_spec("resnt")
        Traceback (most recent call last):
        ...
        bgcache.errors.UnknownModelError: unknown model 'resnt' (did you mean 'resnet'?); known models: convnet, resnet, ieagan, synthetic
    """
    models = _BUILTIN if name in _BUILTIN else registered_models()
    if name not in models:
        raise UnknownModelError(
            f"unknown model {name!r}{did_you_mean(name, models)}; known models: {', '.join(models)}"
        )
    return models[name]


def load_model(
    name: str,
    checkpoint: str | Path | None = None,
    *,
    device: str = "cpu",
    optimize: bool = True,
    nintra: int = 1,
    ninter: int = 1,
    precision: str = "fp32",
    batch_events: int | None = None,
) -> Any:
    """Load a generator by name.

    Args:
        name: a registered model name (``bgcache models`` lists them).
        checkpoint: path of the state_dict file (GAN models); ignored by ``synthetic``.
        device: ``"cpu"`` or a torch device string such as ``"cuda"``.
        optimize: run the fast exact inference path (False: plain layer-by-layer forward).
        nintra: intra-op threads (like the Belle II module), >= 1.
        ninter: inter-op threads, >= 1.
        precision: ``"fp32"`` (default, exact), ``"auto"`` (bf16-mixed where the device
            has bf16 matrix hardware and the model passed the fidelity gate, else fp32),
            ``"bf16-mixed"``, or an explicit ``"bf16"``/``"fp16"`` that moves the occupancy
            (:mod:`bgcache.models.precision`); what ran is recorded in pools.
        batch_events: GAN models: events per forward pass (default 1 on a CPU, 8 on a
            CUDA device, where it is part of the content and recorded in pools). Passed to
            the loader only when given.

    Returns:
        A generator with ``events(keys)`` and, for GANs, ``images(latents)``.

    Example:
        >>> gen = load_model("synthetic")
        >>> len(gen.events([(1, 0), (1, 1)]))
        2
    """
    spec = get_spec(name)
    extra = {} if batch_events is None else {"batch_events": batch_events}
    return spec.load(
        checkpoint,
        name=name,
        device=device,
        optimize=optimize,
        nintra=nintra,
        ninter=ninter,
        precision=precision,
        **extra,
    )


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file (a checkpoint's identity in a pool's content record)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_threads(nintra: int, ninter: int) -> tuple[int, int]:
    """Check thread counts like the Belle II module: integers >= 1."""
    for label, value in (("nintra", nintra), ("ninter", ninter)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UsageError(f"{label} must be an integer >= 1, got {value!r}")
    return int(nintra), int(ninter)


__all__ = [
    "ENTRY_POINT_GROUP",
    "GAN_MODELS",
    "Generator",
    "ModelSpec",
    "file_sha256",
    "get_spec",
    "load_model",
    "registered_models",
    "validate_threads",
]
