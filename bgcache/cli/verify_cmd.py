"""``bgcache verify``: read a whole pool and report every problem (see
:func:`bgcache.store.verify.verify_pool`)."""

from __future__ import annotations

from typing import Annotated

import typer


def verify(
    pool: Annotated[
        str, typer.Argument(metavar="POOL", help="Pool directory.", show_default=False)
    ],
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Also fail on warnings (leftovers of an interrupted build, a stale summary).",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Read every block of a pool and check it; exit 0 only when it is clean.

    Checks checksums (crc32c of every chunk and shard index), stored sizes,
    offsets and counts, index ranges and block names, sort order and pixel
    bounds of every event, charges, the Zarr metadata of every column, the
    root record, and leftovers of interrupted writes. Each problem is printed
    with its block and key range. Exit code 1 if there is a problem; warnings
    (an interrupted build's leftovers, which a resumed build completes) fail
    only with --strict.

    [bold]Examples[/bold]

        bgcache verify demo-pool
        bgcache verify demo-pool --strict
        bgcache verify demo-pool --json
    """
    from rich.markup import escape

    from bgcache.cli._output import event_progress, fmt_bytes, plural, print_json, stdout_console
    from bgcache.store.pool import open_pool
    from bgcache.store.verify import verify_pool

    opened = open_pool(pool)
    progress = event_progress(quiet=quiet, unit="blocks")
    task = progress.add_task("verifying blocks", total=len(opened.block_list))
    with progress:
        report = verify_pool(
            opened, progress=lambda done, _total: progress.update(task, completed=done)
        )
    failed = bool(report.problems) or (strict and bool(report.warnings))
    if json_output:
        record = report.to_dict()
        record["ok"] = not failed
        print_json(record)
    else:
        out = stdout_console()
        for finding in report.problems:
            out.print(f"[bold red]PROBLEM[/bold red] {escape(str(finding))}", soft_wrap=True)
        for finding in report.warnings:
            out.print(f"[yellow]warning[/yellow] {escape(str(finding))}", soft_wrap=True)
        verdict = (
            "[bold red]DAMAGED[/bold red]" if report.problems else "[bold green]OK[/bold green]"
        )
        out.print(
            f"{verdict}: pool {escape(report.pool)}: {plural(report.blocks, 'block')}, "
            f"{plural(report.events, 'event')}, {plural(report.hits, 'hit')} checked "
            f"({fmt_bytes(report.bytes_read)} read in {report.seconds:.1f} s); "
            f"{plural(len(report.problems), 'problem')}, {plural(len(report.warnings), 'warning')}",
            soft_wrap=True,  # one line, as the findings (a log or a script reads it)
        )
    if failed:
        raise typer.Exit(1)
