"""``bgcache gc``: remove a pool's superseded blocks and stale partial files (see
:mod:`bgcache.store.gc` for what is safe beside live readers and writers)."""

from __future__ import annotations

from typing import Annotated

import typer


def _check_grace(value: str) -> str:
    from bgcache.errors import UsageError
    from bgcache.store.gc import parse_duration

    try:
        parse_duration(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def gc(
    pool: Annotated[
        str, typer.Argument(metavar="POOL", help="Pool directory.", show_default=False)
    ],
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="DURATION",
            callback=_check_grace,
            help="Keep what is younger than this (90s, 30m, 2h, 1d): a superseded block "
            "whose longer block was written more recently may still be read by a reader "
            "that opened the pool before.",
        ),
    ] = "24h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Say what would be removed; remove nothing.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Remove what is not data: superseded short blocks and old *.partial files.

    A build that extends a pool rewrites its last, short block in full and
    leaves the short one beside it; an interrupted write leaves *.partial
    files. Both are removed here once older than --grace (default 24h), which
    keeps them while a reader or writer that started before may still use
    them. Complete blocks, incomplete blocks (a resumed build completes them)
    and foreign files are never touched.

    [bold]Examples[/bold]

        bgcache gc demo-pool --dry-run
        bgcache gc demo-pool --grace 0s      # no reader or build is running
    """
    from rich.markup import escape

    from bgcache.cli._output import fmt_bytes, plural, print_json, stdout_console
    from bgcache.store.gc import collect_garbage, parse_duration

    report = collect_garbage(pool, grace_seconds=parse_duration(grace), dry_run=dry_run)
    if json_output:
        print_json(report.to_dict())
        return
    out = stdout_console()
    out.soft_wrap = True
    verb = "would remove" if dry_run else "removed"
    for item in report.removed:
        out.print(f"{verb} {item['kind']} {escape(item['path'])} ({fmt_bytes(item['bytes'])})")
    blocks = sum(1 for item in report.removed if item["kind"] == "superseded block")
    partials = len(report.removed) - blocks
    kept = f"; kept {plural(len(report.kept), 'item')} younger than {grace}" if report.kept else ""
    out.print(
        f"{verb} {plural(blocks, 'superseded block')} and {plural(partials, 'partial file')}, "
        f"{fmt_bytes(report.bytes_freed)}{kept}"
    )
