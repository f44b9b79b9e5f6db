"""``bgcache fidelity``: the fidelity gate of a reduced precision (see :mod:`bgcache.fidelity`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def fidelity(
    pool: Annotated[
        str,
        typer.Argument(
            metavar="POOL",
            help="A pool in a reduced precision (e.g. bf16-mixed).",
            show_default=False,
        ),
    ],
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE",
            help="A pool of the same model, checkpoint and keys in fp32.",
            show_default=False,
        ),
    ],
    events: Annotated[
        int,
        typer.Option(
            "--events",
            "-n",
            min=8,
            help="Shared keys judged (the first ones of REFERENCE's order); the contract is 200.",
        ),
    ] = 200,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the gate's report as JSON on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Judge a reduced-precision pool against an fp32 pool of the same keys.

    The fidelity gate of docs/models.md: the mean occupancy within 0.3 %,
    every sensor within 2 sigma of its statistical error, the charge and
    cluster-size spectra closer (Kolmogorov-Smirnov) on the same keys than
    two fp32 halves of different keys are, and compare's verdict
    "compatible". Exit code 0 when the pool passes, 1 when it does not.
    Needs scipy: pip install 'bgcache[compare]'.

    [bold]Examples[/bold]

        bgcache build fp32-pool -m convnet -c convnet.pt -n 200 --precision fp32
        bgcache build mixed-pool -m convnet -c convnet.pt -n 200 --precision bf16-mixed
        bgcache fidelity mixed-pool fp32-pool
        bgcache fidelity mixed-pool fp32-pool --json
    """
    from bgcache.cli._output import event_progress, print_json
    from bgcache.fidelity import fidelity_gate
    from bgcache.significance import require_scipy
    from bgcache.store.pool import open_pool

    require_scipy()
    pools = [open_pool(pool), open_pool(reference)]
    progress = event_progress(quiet=quiet)
    task = progress.add_task("reading events", total=2 * min(events, len(pools[1])))
    with progress:
        report = fidelity_gate(
            pools[0], pools[1], events=events, progress=lambda n: progress.advance(task, n)
        )
    if json_output:
        print_json(report)
    else:
        _print_report(report)
    if not report["passed"]:
        raise typer.Exit(1)


def _side(d: dict[str, Any]) -> str:
    on = f" on {d['device_class']}" if d.get("device_class") else ""
    return f"{d['url']} ({d['precision']}{on}, {d['events']:,} events)"


def _print_report(report: dict[str, Any]) -> None:
    from rich.markup import escape

    from bgcache.cli._output import stdout_console

    out = stdout_console()
    out.soft_wrap = True
    out.print(f"[bold]pool[/bold]       {escape(_side(report['pool']))}")
    out.print(f"[bold]reference[/bold]  {escape(_side(report['reference']))}")
    out.print(
        f"[bold]model[/bold]      {escape(report['model'])}, {report['events']:,} shared keys"
    )
    width = max(len(c["label"]) for c in report["criteria"])
    out.print(f"[bold]{'criterion'.ljust(width)}  result  measured[/bold]")
    for c in report["criteria"]:  # text columns, left-aligned: a log reads as a screen does
        line = f"{c['label'].ljust(width)}  {'pass' if c['passed'] else 'FAIL':6}  {c['text']}"
        out.print(escape(line) if c["passed"] else f"[bold red]{escape(line)}[/bold red]")
    style = "green" if report["passed"] else "bold red"
    word = "passes" if report["passed"] else "fails"
    out.print(
        f"[bold]gate[/bold]       [{style}]{report['pool']['precision']} {word} the fidelity gate[/{style}]"
    )
