"""``bgcache compare``: a pool against a reference pool (see :mod:`bgcache.compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def compare(
    pool: Annotated[
        str, typer.Argument(metavar="POOL", help="The pool to judge.", show_default=False)
    ],
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE",
            help="The reference pool (e.g. one made by bgcache import).",
            show_default=False,
        ),
    ],
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            min=0,
            help="Events read from each pool, spread evenly over it; 0 = all.",
        ),
    ] = 500,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Draw every distribution, pool against reference (.png/.pdf/.svg; needs matplotlib).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole report as JSON on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Compare a pool with a reference pool, with statistical errors and verdicts.

    Per-sensor occupancy (ratio with errors), hits per event, the charge
    spectrum, 8-connected clusters (size, charge, extent in u and v,
    clusters per event) and the 40 x 40 correlation of sensor occupancies
    over events, each with its Kolmogorov-Smirnov and Wasserstein-1
    distance (max |delta rho| for the correlations), a statistical test
    (p-value, from scipy) and a verdict: "compatible", or "differs at N
    sigma" below p = 0.001; then one verdict over all quantities. Events
    are sampled evenly from each pool (--sample), read one at a time.
    Needs scipy: pip install 'bgcache[compare]'.

    [bold]Examples[/bold]

        bgcache compare convnet-pool bg-pool
        bgcache compare convnet-pool bg-pool --sample 2000 --plot compare.png
        bgcache compare convnet-pool bg-pool --json
    """
    from bgcache.cli._output import event_progress, print_json
    from bgcache.compare import compare_pools
    from bgcache.significance import require_scipy
    from bgcache.store.pool import open_pool

    if plot is not None:  # a bad --plot fails now, not after reading the samples
        from bgcache.errors import UsageError
        from bgcache.plot import check_plot_path

        try:
            check_plot_path(plot)  # also: the file can be made, matplotlib imported
        except UsageError as exc:
            raise UsageError(f"--plot: {exc}") from None
    require_scipy()
    pools = [open_pool(pool), open_pool(reference)]
    total = sum(len(p) if sample == 0 else min(sample, len(p)) for p in pools)
    progress = event_progress(quiet=quiet)
    task = progress.add_task("reading events", total=total)
    with progress:
        report = compare_pools(
            pools[0], pools[1], sample=sample, progress=lambda n: progress.advance(task, n)
        )
    if plot is not None:
        from bgcache.plot import plot_comparison

        report["plot"] = str(plot_comparison(plot, report))
    if json_output:
        print_json(report)
        return
    _print_report(report)


def _side(d: dict[str, Any]) -> str:
    from rich.markup import escape

    kind = "imported" if d["imported"] else d["model"]
    flag = (
        ", UNTRAINED"
        if d["untrained"]
        else (", not a physics model" if not d["physics_model"] else "")
    )
    return f"{escape(d['url'])} ({kind}{flag}; {d['sampled']:,} of {d['events']:,} events)"


def _print_report(report: dict[str, Any]) -> None:
    from rich.markup import escape

    from bgcache.cli._output import stdout_console
    from bgcache.compare import REPORT_COLUMNS, aligned, format_report_table

    out = stdout_console()
    out.soft_wrap = True  # aligned lines, never wrapped: a log reads as a screen does
    out.print(f"[bold]pool[/bold]       {_side(report['pool'])}")
    out.print(f"[bold]reference[/bold]  {_side(report['reference'])}")
    lines = aligned(format_report_table(report), REPORT_COLUMNS)
    out.print(f"[bold]{escape(lines[0])}[/bold]")
    for line in lines[1:]:
        out.print(escape(line))
    verdict = report["verdict"]
    style = "green" if verdict["compatible"] else "bold red"
    out.print(f"[bold]verdict[/bold]    [{style}]{escape(verdict['verdict'])}[/{style}]")
    out.print()
    rows = []
    for s in report["occupancy"]["sensors"]:
        ratio = "" if s["ratio"] is None else f"{s['ratio']:.3f} ± {s['ratio_error']:.3f}"
        rows.append(
            (
                f"{s['layer']}.{s['ladder']}.{s['sensor']}",
                str(s["vxd_id"]),
                f"{100 * s['pool']:.4f} ± {100 * s['pool_error']:.4f}",
                f"{100 * s['reference']:.4f} ± {100 * s['reference_error']:.4f}",
                ratio,
                "" if s["pull"] is None else f"{s['pull']:+.2f}",
            )
        )
    lines = aligned(
        rows,
        ("sensor", "vxd id", "occupancy [%]", "reference [%]", "pool / reference", "pull [sigma]"),
    )
    out.print(f"[bold]{escape(lines[0])}[/bold]")
    for line in lines[1:]:
        out.print(escape(line))
    if "plot" in report:
        out.print(f"plot       {report['plot']}")
