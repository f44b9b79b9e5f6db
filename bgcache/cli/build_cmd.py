"""``bgcache build``: build, complete or extend a pool (see :func:`bgcache.build.build_pool`).

Options can also come from environment variables (``BGCACHE_MODEL``, ``BGCACHE_SEED``...)
and from a config file (``--config``, see :mod:`bgcache.cli._config`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bgcache.cli._config import ConfigOption
from bgcache.cli._options import (
    CheckpointOption,
    DeviceOption,
    ModelOption,
    NinterOption,
    NintraOption,
    OptimizeOption,
    PrecisionOption,
    QuietOption,
    SeedOption,
    check_codec,
    check_scheduler,
    check_shard,
)


def build(
    pool: Annotated[
        str,
        typer.Argument(
            metavar="POOL", help="Pool directory (created if absent).", show_default=False
        ),
    ],
    model: ModelOption,
    events: Annotated[
        int,
        typer.Option(
            "--events",
            "-n",
            min=1,
            envvar="BGCACHE_EVENTS",
            help="Number of event keys to build, from --first-index on.",
            show_default=False,
        ),
    ],
    checkpoint: CheckpointOption = None,
    seed: SeedOption = 0,
    first_index: Annotated[
        int,
        typer.Option(
            "--first-index",
            min=0,
            envvar="BGCACHE_FIRST_INDEX",
            help="Index of the first event key (rounded down to a block start).",
        ),
    ] = 0,
    block_events: Annotated[
        int | None,
        typer.Option(
            "--block-events",
            min=1,
            max=65536,
            envvar="BGCACHE_BLOCK_EVENTS",
            help=(
                "Events per block of a NEW pool (default 256; 16 for GAN models on a CPU). "
                "A block is the unit of writing and resume; an existing pool keeps its own."
            ),
            show_default=False,
        ),
    ] = None,
    batch_events: Annotated[
        int | None,
        typer.Option(
            "--batch-events",
            min=1,
            envvar="BGCACHE_BATCH_EVENTS",
            help=(
                "GAN models: events per forward pass (default 1 on a CPU, 8 on a GPU, where "
                "it is part of the content and recorded; a CUDA pool keeps its own). Other "
                "models: events per generator call (default 32)."
            ),
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = "cpu",
    nintra: NintraOption = 1,
    ninter: NinterOption = 1,
    optimize: OptimizeOption = True,
    precision: PrecisionOption = "auto",
    codec: Annotated[
        str | None,
        typer.Option(
            "--codec",
            envvar="BGCACHE_CODEC",
            callback=check_codec,
            metavar="NAME[:LEVEL]",
            show_default=False,
            help=(
                "Chunk codec of a NEW pool: zstd (zstd:1, the default: smallest), lz4 (lz4:9) "
                "or lz4hc (lz4hc:9), which decode 4-5x faster from 1.4-1.6x the bytes; LEVEL "
                "1..9. An existing pool keeps its own ('bgcache recompress' copies a pool "
                "under another)."
            ),
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            envvar="BGCACHE_SHARD",
            callback=check_shard,
            metavar="K/N",
            help=(
                "Build only the K-th (0-based) of N contiguous parts of the range's blocks, "
                "e.g. --shard $SLURM_ARRAY_TASK_ID/100."
            ),
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            envvar="BGCACHE_RESUME",
            help=(
                "Skip complete blocks and build only what is missing; --no-resume refuses "
                "to run if any block of the range is complete."
            ),
        ),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-j",
            min=1,
            max=256,
            envvar="BGCACHE_WORKERS",
            help="Processes that generate and write blocks in parallel.",
        ),
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            envvar="BGCACHE_SCHEDULER",
            callback=check_scheduler,
            metavar="ADDRESS",
            help=(
                "Dask scheduler (tcp://HOST:PORT): each block becomes a task on its workers, "
                "which write into the pool (needs bgcache\\[dask]; the pool path must be the "
                "same on every worker)."
            ),
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the build summary as JSON on stdout.")
    ] = False,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Build a pool, or complete or extend one, with the events of one seed stream.

    The keys (SEED, FIRST_INDEX) ... (SEED, FIRST_INDEX + EVENTS - 1) are
    cut into blocks; complete blocks are skipped, so running the same
    command again completes an interrupted build with the same bytes. A
    later build may add another seed or extend a stream; a build whose
    model, checkpoint or content options differ from what the pool records
    is refused. With --shard K/N several processes or machines fill one
    pool at once. Ctrl-C keeps every complete block.

    [bold]Examples[/bold]

        bgcache build demo-pool --model synthetic --events 5000
        bgcache build demo-pool --config configs/demo.toml
        bgcache build demo-pool -m synthetic -n 5000 --seed 2 -j 2
        bgcache build serving-pool -m synthetic -n 5000 --codec lz4
        bgcache checkpoint init --model convnet -o demo.pt
        bgcache build convnet-pool -m convnet -c demo.pt -n 64 --nintra 2
        bgcache build big-pool -m convnet -c demo.pt -n 100000 --shard 3/10
        bgcache build big-pool -m convnet -c demo.pt -n 100000 --scheduler tcp://head:8786
        bgcache build big-pool --config configs/convnet-gpu.toml --json
        bgcache build gpu-pool -m resnet -c demo.pt -n 100000 --device cuda --batch-events 16
    """
    from bgcache.build import build_pool
    from bgcache.cli._output import BlockProgress, note, print_json
    from bgcache.models import get_spec

    del config  # already applied: its callback made the file's values the options' defaults
    spec = get_spec(model)
    if checkpoint is not None and not spec.needs_checkpoint:
        note(f"model {model!r} takes no checkpoint: ignoring --checkpoint", quiet=quiet)
        checkpoint = None

    # a spinner while the model loads (transient: it leaves nothing on a terminal or pipe)
    progress = BlockProgress(
        f"building {model}", f"loading {model}...", quiet=quiet, spin=spec.needs_torch
    )

    try:
        with progress:
            result = build_pool(
                pool,
                model=model,
                events=events,
                checkpoint=checkpoint,
                seed=seed,
                first_index=first_index,
                block_events=block_events,
                batch_events=batch_events,
                device=device,
                nintra=nintra,
                ninter=ninter,
                optimize=optimize,
                precision=precision,
                codec=codec,
                shard=shard,
                resume=resume,
                workers=workers,
                scheduler=scheduler,
                progress=progress,
            )
    except KeyboardInterrupt:
        from bgcache.cli._app import interrupted

        raise interrupted("every complete block is kept; run the same command to resume") from None
    for text in result.notes:
        note(text, quiet=quiet)
    record = result.to_dict()
    if json_output:
        print_json(record)
    else:
        _print_summary(record)


def _print_summary(r: dict[str, Any]) -> None:
    from rich.markup import escape

    from bgcache.cli._output import block_count_lines, fmt_bytes, fmt_int, stdout_console
    from bgcache.geometry import DENSE_EVENT_BYTES

    out = stdout_console()
    out.soft_wrap = True  # one line per fact, also in pipes and logs
    shard = f", shard {r['shard'][0]}/{r['shard'][1]}" if r["shard"] else ""
    out.print(
        f"[bold]pool {escape(r['pool'])}[/bold]: model {r['model']}, keys (seed {r['seed']}, "
        f"index {r['first_index']}..{r['stop_index'] - 1}){shard}, "
        f"{r['block_events']} events per block"
    )
    for line in block_count_lines(r, "built"):
        out.print(line)
    if r["events_written"]:
        per_event = r["bytes_per_event"]
        out.print(
            f"written    {fmt_bytes(r['bytes_written'])}, {per_event / 1000:.1f} kB/event "
            f"({DENSE_EVENT_BYTES / per_event:.0f}x smaller than dense)"
        )
        busy = r["generate_seconds"] + r["write_seconds"]
        workers = r["workers"]
        how = (
            f"summed over {workers} processes, each writing beside its generating"
            if workers > 1
            else "writing runs in a thread beside generating"
        )
        out.print(
            f"time       generating {r['generate_seconds']:.1f} s, compressing and writing "
            f"{r['write_seconds']:.1f} s, loading {r['load_seconds']:.1f} s ({how}"
            + (
                f", so they add up to more than the build's {r['seconds']:.1f} s"
                if busy > r["seconds"]
                else ""
            )
            + ")"
        )
    out.print(f"pool       {fmt_int(r['pool_events'])} complete events")
