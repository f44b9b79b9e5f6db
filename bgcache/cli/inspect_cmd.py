"""``bgcache inspect``: describe a pool; optionally its statistics against Geant4, and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def inspect_pool(
    pool: Annotated[
        str, typer.Argument(metavar="POOL", help="Pool directory.", show_default=False)
    ],
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="Per-sensor occupancy and charge spectrum of the pool (or a sample), beside the Geant4 reference.",
        ),
    ] = False,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            min=0,
            help="Events read for --stats and --plot, spread evenly over the pool; 0 = all.",
        ),
    ] = 1000,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Draw occupancy per sensor, charge spectrum and one event's hitmap (.png/.pdf/.svg; needs matplotlib).",
            show_default=False,
        ),
    ] = None,
    event: Annotated[
        int,
        typer.Option("--event", min=0, help="Pool position of the event drawn by --plot."),
    ] = 0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print everything as JSON on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Describe a pool: model, checkpoint, streams, size and compression.

    Shows the model and its checkpoint sha256 (with a loud UNTRAINED mark
    for demo checkpoints, and NOT A PHYSICS MODEL for synthetic pools), the
    seed streams and their complete index ranges, events and blocks, bytes
    on disk, bytes per event, the compression ratio against dense storage
    (7,680,000 B/event) and the codec settings. --stats adds per-sensor
    occupancy and the charge spectrum beside the Geant4 reference; --plot
    draws them.

    [bold]Examples[/bold]

        bgcache inspect demo-pool
        bgcache inspect demo-pool --json
        bgcache inspect demo-pool --stats
        bgcache inspect demo-pool --stats --sample 0
        bgcache inspect demo-pool --plot demo-pool.png --event 17
    """
    from bgcache.cli._output import event_progress, print_json
    from bgcache.store.pool import open_pool

    if plot is not None:  # a bad --plot fails now, not after reading the sample
        from bgcache.errors import UsageError
        from bgcache.plot import check_plot_path

        try:
            check_plot_path(plot)
        except UsageError as exc:
            raise UsageError(f"--plot: {exc}") from None
    opened = open_pool(pool)
    if plot is not None and len(opened):
        opened.block_of(event)  # a bad --event fails now, not after reading the sample
    info = opened.describe()
    comparison = None
    if stats or plot is not None:
        from bgcache.stats import PoolStatistics, compare_with_reference

        if len(opened) == 0:
            from bgcache.errors import UsageError

            raise UsageError(f"pool '{opened.url}' holds no complete events: nothing to compare")
        n_read = len(opened) if sample == 0 else min(sample, len(opened))
        summary = PoolStatistics()
        progress = event_progress(quiet=quiet)
        task = progress.add_task("reading events", total=n_read)
        with progress:
            for _, one in opened.sample(sample or None):
                summary.add(one)
                progress.advance(task)
        comparison = compare_with_reference(summary)
        info["statistics"] = comparison
        if plot is not None:
            from bgcache.plot import plot_pool

            shown = opened.event(event)
            key = opened.key(event)
            written = plot_pool(
                plot,
                summary,
                event=shown,
                model=opened.model,
                note=_warning(info),
                event_label=f"position {event}, key (seed {key.seed}, index {key.index})",
                title=f"{opened.model} pool {Path(opened.url).name}",
            )
            info["plot"] = str(written)
    if json_output:
        print_json(info)
        return
    _print_description(info)
    if comparison is not None:
        _print_statistics(comparison, sampled=comparison["n_events"] < info["events"])
    if plot is not None:
        from bgcache.cli._output import stdout_console

        stdout_console().print(f"plot       {info['plot']}")


def _warning(info: dict[str, Any]) -> str | None:
    if info["untrained"]:
        return "UNTRAINED demo checkpoint — NOT a physics model"
    if not info["physics_model"]:
        return str(info.get("note") or "NOT a physics model")
    return None


def _count(value: object) -> str:
    """A count from a pool's record (untrusted: anything else shows as ``?``)."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    return f"{value:,}" if ok else "?"


#: Source files of an imported pool listed by name (``--json`` has them all).
_FILES_SHOWN = 5


def _print_description(info: dict[str, Any]) -> None:
    from rich.markup import escape

    from bgcache.cli._output import fmt_bytes, fmt_int, stdout_console

    out = stdout_console()
    out.soft_wrap = True  # one line per fact, also in pipes and logs
    layout = info["layout"]
    comp = layout["compression"]
    content = info["content"]
    out.print(
        f"[bold]pool {escape(info['pool'])}[/bold] ({info['format']} v{info['format_version']})"
    )
    options = ", ".join(
        f"{k} {content[k]}"
        for k in ("architecture", "precision", "device_type", "optimize")
        if k in content
    )
    if "device_class" in content:  # a reduced precision: its pixels depend on the kernels
        options += f", made on {content['device_class']}"
    if info["imported"]:
        files = content.get("files")
        files = files if isinstance(files, list) else []
        out.print(
            f"model      imported from {len(files)} {escape(str(content.get('source', 'ROOT files')))} "
            f"(tree {escape(str(content.get('tree')))}, branch {escape(str(content.get('branch')))}, {_count(content.get('events'))} entries)"
        )
        for f in files[:_FILES_SHOWN]:
            if isinstance(f, dict):
                out.print(
                    f"source     {escape(str(f.get('name')))}: {_count(f.get('entries'))} entries, "
                    f"sha256 {str(f.get('sha256'))[:16]}..."
                )
        if len(files) > _FILES_SHOWN:
            out.print(
                f"source     ... and {len(files) - _FILES_SHOWN} more files (--json lists them)"
            )
    else:
        out.print(f"model      {escape(str(info['model']))} ({escape(options)})")
    if info["checkpoint_sha256"]:
        hint = (
            f" (was {escape(info['checkpoint_path_hint'])})" if info["checkpoint_path_hint"] else ""
        )
        out.print(f"checkpoint sha256 {info['checkpoint_sha256']}{hint}")
    warning = _warning(info)
    if warning:
        out.print(
            f"[bold red]{escape(warning.upper() if info['untrained'] else warning)}[/bold red]",
            soft_wrap=True,
        )
    out.print(
        f"events     {fmt_int(info['events'])} in {fmt_int(info['blocks'])} blocks of up to "
        f"{layout['block_events']}"
        + (
            f", {fmt_int(round(info['mean_hits_per_event']))} hits/event"
            if info["mean_hits_per_event"] is not None
            else ""
        )
    )
    for stream in info["streams"]:
        ranges = ", ".join(f"{a}..{b - 1}" for a, b in stream["ranges"])
        out.print(
            f"stream     seed {stream['seed']}: indices {ranges} "
            f"({fmt_int(stream['events'])} events, {stream['blocks']} blocks)"
        )
    size = info["bytes"]
    out.print(
        f"on disk    {fmt_bytes(size['total'])}"
        + (f" ({fmt_bytes(size['other'])} not in complete blocks)" if size["other"] > 4096 else "")
    )
    if info["bytes_per_event"]:
        out.print(
            f"per event  {info['bytes_per_event'] / 1000:.1f} kB"
            + (
                f" ({info['bits_per_hit']:.2f} bit/hit), "
                if info["bits_per_hit"] is not None
                else " (no hits), "
            )
            + f"{info['compression_ratio']:.0f}x smaller than dense ({fmt_int(info['dense_bytes_per_event'])} B)"
        )
    out.print(
        f"codec      {info['codec']} (blosc {comp['cname']} level {comp['clevel']}, "
        f"{comp['shuffle']}), {layout['checksum']}; {fmt_int(layout['chunk_hits'])} hits per chunk"
    )
    created = info.get("created") or "?"
    software = info.get("software", {})
    out.print(
        f"created    {created} with bgcache {software.get('bgcache', '?')}, zarr {software.get('zarr', '?')}"
    )
    if info["leftovers"]:
        kinds: dict[str, int] = {}
        for item in info["leftovers"]:
            kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
        text = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items())
        out.print(f"[yellow]leftovers  {text} (not data; see 'bgcache verify')[/yellow]")


def _print_statistics(c: dict[str, Any], *, sampled: bool) -> None:
    from rich.table import Table

    from bgcache.cli._output import stdout_console
    from bgcache.stats import COMPARISON_COLUMNS, format_comparison_table

    out = stdout_console()
    out.print()
    what = "a sample of " if sampled else ""
    out.print(f"[bold]statistics of {what}{c['n_events']} events vs the Geant4 reference[/bold]")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, name in enumerate(COMPARISON_COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in format_comparison_table(c):
        table.add_row(*row)
    out.print(table)
    out.print()
    sensors = Table(box=None, header_style="bold", pad_edge=False, title="per sensor")
    for name in ("sensor", "vxd id", "occupancy", "Geant4", "ratio", "mean charge", "Geant4"):
        sensors.add_column(name, justify="right")
    for s in c["sensors"]:
        ratio = "" if s["occupancy_ratio"] is None else f"{s['occupancy_ratio']:.2f}"
        sensors.add_row(
            f"{s['layer']}.{s['ladder']}.{s['sensor']}",
            str(s["vxd_id"]),
            f"{100 * s['occupancy']:.3f} %",
            f"{100 * s['reference_occupancy']:.3f} %",
            ratio,
            f"{s['mean_charge']:.1f}",
            f"{s['reference_mean_charge']:.1f}",
        )
    out.print(sensors)
