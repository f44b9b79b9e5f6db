"""``bgcache import``: a pool from background overlay ROOT files (see :mod:`bgcache.importer`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bgcache.cli._options import QuietOption, SeedOption, check_shard


def import_files(
    pool: Annotated[
        str,
        typer.Argument(
            metavar="POOL", help="Pool directory (created if absent).", show_default=False
        ),
    ],
    files: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE...",
            help="Background overlay ROOT files in order (a directory: its *.root files, sorted).",
            show_default=False,
        ),
    ],
    seed: SeedOption = 0,
    block_events: Annotated[
        int | None,
        typer.Option(
            "--block-events",
            min=1,
            max=65536,
            envvar="BGCACHE_BLOCK_EVENTS",
            help="Events per block of a NEW pool (default 256); an existing pool keeps its own.",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            envvar="BGCACHE_SHARD",
            callback=check_shard,
            metavar="K/N",
            help="Import only the K-th (0-based) of N contiguous parts of the entries' blocks.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the import summary as JSON on stdout.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Import the PXD digits of background overlay files into a pool.

    Reads the branch PXDDigits of the TTree 'tree' (as basf2 writes it,
    split) with uproot: one entry becomes one event with the key (SEED,
    position of the entry over the files in order). The pool records the
    files' sha256 and entry counts; running the same command again
    completes an interrupted import with the same bytes, and a pool holds
    one import: other files, or a GAN build into it, are refused.

    [bold]Examples[/bold]

        bgcache import bg-pool /data/overlay/*.root
        bgcache import bg-pool /data/overlay --shard 2/8
        bgcache import bg-pool run1.root run2.root --json
    """
    from bgcache.cli._output import BlockProgress, note, print_json
    from bgcache.importer import import_pool

    # a spinner while the files are checked and hashed, then the bar of the import
    progress = BlockProgress("importing", "checking the background files...", quiet=quiet)
    try:
        with progress:
            result = import_pool(
                pool,
                files,
                seed=seed,
                block_events=block_events,
                shard=shard,
                progress=progress,
                on_scan=lambda done, total: progress.say(
                    f"checking the background files: {done} of {total} (entries, sha256)"
                ),
            )
    except KeyboardInterrupt:
        from bgcache.cli._app import interrupted

        raise interrupted("every complete block is kept; run the same command to resume") from None
    for text in result.notes:
        note(text, quiet=quiet)
    record = result.to_dict()
    record["read_seconds"] = record.pop("generate_seconds")
    record["scan_seconds"] = record.pop("load_seconds")
    del record["workers"]
    if json_output:
        print_json(record)
    else:
        _print_summary(record)


def _print_summary(r: dict[str, Any]) -> None:
    from rich.markup import escape

    from bgcache.cli._output import block_count_lines, fmt_bytes, fmt_int, stdout_console

    out = stdout_console()
    out.soft_wrap = True
    shard = f", shard {r['shard'][0]}/{r['shard'][1]}" if r["shard"] else ""
    out.print(
        f"[bold]pool {escape(r['pool'])}[/bold]: imported events, keys (seed {r['seed']}, "
        f"index 0..{r['stop_index'] - 1}){shard}, {r['block_events']} events per block"
    )
    for line in block_count_lines(r, "imported"):
        out.print(line)
    if r["events_written"]:
        out.print(
            f"written    {fmt_bytes(r['bytes_written'])}, "
            f"{r['bytes_per_event'] / 1000:.1f} kB/event"
        )
        out.print(
            f"time       checking the files {r['scan_seconds']:.1f} s, reading "
            f"{r['read_seconds']:.1f} s, compressing and writing {r['write_seconds']:.1f} s "
            "(writing runs in a thread beside reading)"
        )
    out.print(f"pool       {fmt_int(r['pool_events'])} complete events")
