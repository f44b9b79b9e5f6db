"""``bgcache models``: the generator registry as a table or JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def models(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of models on stdout.")
    ] = False,
) -> None:
    """List the registered generators (built-ins and entry-point plugins).

    For each model: latent size, trainable parameters, whether images are
    conditioned on the sensor, whether it needs torch (and a checkpoint),
    and whether it is a physics model. [bold]synthetic[/bold] needs no torch
    and is NOT a physics model.

    [bold]Examples[/bold]

        bgcache models
        bgcache models --json
    """
    import importlib.metadata
    import importlib.util

    from bgcache.models import registered_models

    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "latent_dim": spec.latent_dim,
            "n_parameters": spec.n_parameters,
            "conditional": spec.conditional,
            "needs_torch": spec.needs_torch,
            "needs_checkpoint": spec.needs_checkpoint,
            "physics": spec.physics,
            "description": spec.description,
        }
        for spec in registered_models().values()
    ]
    from bgcache.cli._output import fmt_int, print_json, stdout_console

    if json_output:
        print_json(rows)
        return

    from rich.markup import escape
    from rich.table import Table

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    console = stdout_console()
    wide = console.width >= 120
    table = Table(header_style="bold")
    columns = ["name", "latent", "parameters", "conditional", "torch", "physics"]
    for column in [*columns, "description"] if wide else columns:
        table.add_column(column, justify="left" if column in ("name", "description") else "right")
    for row in rows:
        cells = [
            row["name"],
            str(row["latent_dim"]) if row["latent_dim"] else "-",
            fmt_int(row["n_parameters"]) if row["n_parameters"] else "-",
            yes(row["conditional"]),
            yes(row["needs_torch"]),
            yes(row["physics"]) if row["physics"] else "[bold red]no[/bold red]",
        ]
        table.add_row(*cells, *([escape(row["description"])] if wide else []))
    console.print(table)
    if not wide:
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            console.print(f"{row['name']:<{width}}  {escape(row['description'])}", soft_wrap=True)
    if importlib.util.find_spec("torch") is not None:
        try:
            torch_line = f"torch {importlib.metadata.version('torch')} is installed"
        except importlib.metadata.PackageNotFoundError:
            torch_line = "torch is installed"
    else:
        torch_line = "torch is not installed: pip install 'bgcache[gan]' for the GAN models"
    console.print(
        f"{escape(torch_line)}. GAN models need a checkpoint: a Belle II payload, or an untrained "
        "demo made by 'bgcache checkpoint init'.",
        soft_wrap=True,
    )
