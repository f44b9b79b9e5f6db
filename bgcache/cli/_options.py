"""Options shared by the commands that run a generator (``generate``, ``build``).

One definition of each option (names, environment variable, help), so that every command
spells and documents it the same way. Use them as parameter annotations with the default
written in the command: ``seed: SeedOption = 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
        envvar="BGCACHE_SEED", help="Seed of the event stream, an integer in [-2**63, 2**63-1]."
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(envvar="BGCACHE_DEVICE", help="Torch device of GAN models: cpu, cuda, cuda:N."),
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
        help=(
            "Network precision of GAN models: fp32 (default, exact), or an explicit "
            "bf16/fp16 that changes pixels (see docs/performance.md)."
        ),
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", envvar="BGCACHE_QUIET", help="No progress bar or notes on stderr."
    ),
]
