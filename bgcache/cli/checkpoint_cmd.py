"""``bgcache checkpoint init|info``: untrained demo checkpoints and checkpoint inspection."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bgcache.cli._options import check_seed

if TYPE_CHECKING:
    from bgcache.models.checkpoint import CheckpointInfo

UNTRAINED_BANNER = "UNTRAINED demo network — not a physics model"

checkpoint_app = typer.Typer(
    name="checkpoint",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


@checkpoint_app.callback()
def _checkpoint() -> None:
    """Make and inspect GAN checkpoint files (PyTorch state_dicts).

    A checkpoint is a plain state_dict, as the Belle II conditions database
    stores them; 'init' makes an UNTRAINED demo one for tests and demos.

    [bold]Examples[/bold]

        bgcache checkpoint init --model convnet -o demo.pt
        bgcache checkpoint info demo.pt
    """


@checkpoint_app.command("init")
def init(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="GAN model: convnet, resnet or ieagan.", show_default=False
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="File to write; its directory must exist.",
            show_default=False,
        ),
    ],
    occupancy: Annotated[
        float,
        typer.Option(help="Target mean fraction of fired pixels, in (0, 0.2]."),
    ] = 0.009,
    seed: Annotated[
        int,
        typer.Option(
            callback=check_seed, help="Seed of the weights: same seed and torch, same file."
        ),
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the written file's info as JSON.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No spinner on stderr.")] = False,
) -> None:
    """Write an UNTRAINED, deterministic, occupancy-calibrated demo checkpoint.

    No trained weights are available outside the Belle II conditions
    database. The network's weights are drawn from SEED, then its
    normalisation statistics and last layer are calibrated (one forward
    pass) so that its output has the requested mean occupancy and a
    realistic mean charge, never dense noise. The file is a plain state_dict
    that loads with strict=True; it records that it is untrained. Takes
    10-40 s on a CPU. Needs torch.

    [bold]Examples[/bold]

        bgcache checkpoint init --model convnet -o convnet-demo.pt
        bgcache checkpoint init -m ieagan --occupancy 0.012 --seed 7 -o ieagan.pt
    """
    from bgcache.cli._output import status
    from bgcache.models.checkpoint import init_checkpoint

    with status(f"making an untrained {model} network (20-90 s on a CPU)...", quiet=quiet) as say:
        info = init_checkpoint(
            model, output, occupancy=occupancy, seed=seed, overwrite=force, progress=say
        )
    _show(info, json_output=json_output)


@checkpoint_app.command("info")
def info(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="Checkpoint file (state_dict).", show_default=False),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Check against this model (default: find the model the file matches).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the info as one JSON object.")
    ] = False,
) -> None:
    """Describe a checkpoint: model match, sha256, parameter count, untrained flag.

    Exits with 1 (after printing the info) when the file does not match the
    model (the one given with --model, or any known model).

    [bold]Examples[/bold]

        bgcache checkpoint info demo.pt
        bgcache checkpoint info payload.pt --model resnet --json
    """
    from bgcache.models.checkpoint import checkpoint_info

    _show(checkpoint_info(file, model=model), json_output=json_output)


def _show(info: CheckpointInfo, *, json_output: bool) -> None:
    """Print a checkpoint's info; raise a mismatch error (exit 1) if it fits no model."""
    from bgcache.cli._output import fmt_bytes, fmt_int, fmt_pct, print_json, stdout_console
    from bgcache.errors import CheckpointMismatchError

    if json_output:
        print_json(info.to_dict())
    else:
        from rich.markup import escape

        out = stdout_console()
        rows: list[tuple[str, str]] = [("file", escape(info.path))]
        if info.matches:
            rows.append(("model", f"{info.model} (layout matches)"))
        elif info.model is not None:
            rows.append(("model", f"{info.model} — [bold red]DOES NOT MATCH[/bold red]"))
        else:
            rows.append(("model", "[bold red]matches no known model[/bold red]"))
        rows += [
            ("sha256", info.sha256),
            ("size", f"{fmt_int(info.size_bytes)} bytes ({fmt_bytes(info.size_bytes)})"),
            ("parameters", f"{fmt_int(info.n_parameters)} ({info.n_entries} state_dict entries)"),
        ]
        demo = info.demo
        if info.untrained:
            made = [f"made by bgcache {demo['bgcache']}"] if "bgcache" in demo else []
            made += [f"seed {demo['seed']}"] if "seed" in demo else []
            rows.append(("untrained", "yes" + (f" ({', '.join(made)})" if made else "")))
        else:
            rows.append(("untrained", "no (no bgcache demo record)"))
        if "target_occupancy" in demo:
            measured = demo.get("measured_occupancy")
            rows.append(
                (
                    "occupancy",
                    f"target {fmt_pct(demo['target_occupancy'])}"
                    + (f", measured {fmt_pct(measured)}" if measured is not None else ""),
                )
            )
        if "target_mean_charge" in demo:
            measured = demo.get("measured_mean_charge")
            rows.append(
                (
                    "mean charge",
                    f"target {demo['target_mean_charge']:.1f} ADU"
                    + (f", measured {measured:.1f} ADU" if measured is not None else ""),
                )
            )
        for problem in info.problems:
            rows.append(("problem", escape(problem)))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            out.print(f"{key:<{width}}  {value}")
        if info.untrained:
            out.print(f"[bold red]{UNTRAINED_BANNER}[/bold red]")
    if not info.matches:
        what = f"model {info.model!r}" if info.model else "any known model"
        problems = info.problems or ["layout differs"]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CheckpointMismatchError(
            f"checkpoint {info.path!r} does not match {what}: {problems[0]}{more}"
        )
