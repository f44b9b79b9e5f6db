"""Options shared by the commands that run a generator (``generate``, ``build``).

One definition of each option (names, environment variable, help), so that every command
spells and documents it the same way. Use them as parameter annotations with the default
written in the command: ``seed: SeedOption = 0``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from bgcache.models.precision import PRECISIONS  # torch-free

#: Devices the command line accepts (bgcache.models._torch checks that they exist).
DEVICE_FORMS = "cpu, cuda or cuda:N"
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


def _suggest(value: str, choices: tuple[str, ...]) -> str:
    from bgcache.errors import did_you_mean

    return did_you_mean(value, choices)


def check_device(value: Any) -> Any:
    """Callback of ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (a usage error otherwise)."""
    if value is not None and not _DEVICE.fullmatch(str(value)):
        hint = _suggest(str(value), ("cpu", "cuda", "cuda:0"))
        raise typer.BadParameter(f"{value!r} is not a device{hint}: use {DEVICE_FORMS}")
    return value


def check_precision(value: Any) -> Any:
    """Callback of ``--precision``: one of :data:`PRECISIONS`."""
    if value is not None and value not in PRECISIONS:
        hint = _suggest(str(value), PRECISIONS)
        raise typer.BadParameter(f"{value!r} is not a precision{hint}: use {', '.join(PRECISIONS)}")
    return value


def check_seed(value: Any) -> Any:
    """Callback of ``--seed``: an integer in [-2**63, 2**63-1] (int64)."""
    if value is not None and not SEED_MIN <= value <= SEED_MAX:
        raise typer.BadParameter(
            f"{value} is out of range: a seed is an integer in [-2**63, 2**63-1]"
        )
    return value


def _checked_by(target: str, doc: str) -> Any:
    """A callback running the library's check ``"module:function"`` (imported when used),
    its UsageError becoming a usage error of the option."""
    module_name, _, func_name = target.partition(":")

    def check(value: Any) -> Any:
        if value is not None:
            import importlib

            from bgcache.errors import UsageError

            try:
                getattr(importlib.import_module(module_name), func_name)(value)
            except UsageError as exc:
                raise typer.BadParameter(str(exc)) from None
        return value

    check.__doc__ = doc
    return check


check_shard = _checked_by(
    "bgcache.build:parse_shard", "Callback of ``--shard``: ``K/N``, 0 <= K < N."
)
check_codec = _checked_by(
    "bgcache.store.format:parse_codec",
    "Callback of ``--codec``: ``zstd``, ``lz4`` or ``lz4hc``, optionally ``:LEVEL`` (1..9).",
)
check_scheduler = _checked_by(
    "bgcache.distributed:check_address",
    "Callback of ``--scheduler``: a Dask scheduler address ``tcp://HOST:PORT``.",
)


def choice(name: str, choices: tuple[str, ...]) -> Any:
    """A callback accepting one of ``choices`` (with a did-you-mean for a typo)."""

    def check(value: Any) -> Any:
        if value is not None and value not in choices:
            hint = _suggest(str(value), choices)
            raise typer.BadParameter(f"{value!r} is not {name}{hint}: use {', '.join(choices)}")
        return value

    return check


ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="BGCACHE_MODEL",
        help="Generator name (see 'bgcache models').",
        show_default=False,
    ),
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        envvar="BGCACHE_CHECKPOINT",
        help="State_dict file of a GAN model (ignored by synthetic).",
        show_default=False,
    ),
]
SeedOption = Annotated[
    int,
    typer.Option(
        envvar="BGCACHE_SEED",
        callback=check_seed,
        help="Seed of the event stream, an integer in [-2**63, 2**63-1].",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        envvar="BGCACHE_DEVICE",
        callback=check_device,
        help="Torch device of GAN models: cpu, cuda, cuda:N.",
    ),
]
NintraOption = Annotated[
    int, typer.Option(envvar="BGCACHE_NINTRA", help="Intra-op threads (like the basf2 module).")
]
NinterOption = Annotated[
    int, typer.Option(envvar="BGCACHE_NINTER", help="Inter-op threads (like the basf2 module).")
]
OptimizeOption = Annotated[
    bool,
    typer.Option(
        "--optimize/--no-optimize",
        envvar="BGCACHE_OPTIMIZE",
        help="Fast exact inference path, or the plain layer-by-layer forward pass.",
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        envvar="BGCACHE_PRECISION",
        callback=check_precision,
        help=(
            "Network precision of GAN models: auto (default: bf16-mixed where the device "
            "has bf16 matrix hardware and the model passed the fidelity gate, else fp32; an "
            "existing pool keeps its own), fp32 (exact reference), bf16-mixed, or an "
            "explicit bf16/fp16 that moves the occupancy (see docs/models.md)."
        ),
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", envvar="BGCACHE_QUIET", help="No progress bar or notes on stderr."
    ),
]
