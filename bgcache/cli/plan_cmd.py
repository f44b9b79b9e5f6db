"""``bgcache plan``: what overlay jobs would take from a pool, before a production."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bgcache.cli._options import SeedOption, choice
from bgcache.draw import ON_EXHAUSTED


def plan(
    pool: Annotated[
        str, typer.Argument(metavar="POOL", help="Pool directory.", show_default=False)
    ],
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=65536,
            help="Number of simulation jobs sharing the pool.",
            show_default=False,
        ),
    ],
    events_per_job: Annotated[
        int,
        typer.Option(
            "--events-per-job", "-n", min=1, help="Simulated events per job.", show_default=False
        ),
    ],
    seed: SeedOption = 0,
    on_exhausted: Annotated[
        str,
        typer.Option(
            "--on-exhausted",
            callback=choice("a policy", ON_EXHAUSTED),
            help="What a job does when its share is used up: generate, reuse or error.",
        ),
    ] = "generate",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the plan as JSON on stdout.")
    ] = False,
) -> None:
    """Plan a production: how many events each job takes from the pool and how
    many it would generate (or reuse) on the fly.

    The pool is split into JOBS disjoint shares; a job draws its share from a
    seed-derived start and, past its end, generates (default), reuses or fails.
    The fallback CPU time is estimated from the generation time the pool's
    builds recorded (on the build's device).

    [bold]Examples[/bold]

        bgcache plan demo-pool --jobs 100 --events-per-job 25
        bgcache plan demo-pool -j 1000 -n 50 --on-exhausted reuse
        bgcache plan demo-pool -j 100 -n 25 --json
    """
    from bgcache.cli._output import print_json
    from bgcache.draw import plan_jobs

    result = plan_jobs(
        pool, njobs=jobs, events_per_job=events_per_job, seed=seed, on_exhausted=on_exhausted
    )
    if json_output:
        print_json(result)
    else:
        _print_plan(result)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _print_plan(r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from bgcache.cli._output import fmt_int, stdout_console

    out = stdout_console()
    out.soft_wrap = True
    out.print(
        f"[bold]pool {escape(r['pool'])}[/bold]: {fmt_int(r['pool_events'])} {r['model']} events; "
        f"{fmt_int(r['njobs'])} jobs x {fmt_int(r['events_per_job'])} events = {fmt_int(r['demand'])} needed"
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in (
        "job",
        "share",
        "events",
        "start",
        "from pool",
        r["on_exhausted"] if r["on_exhausted"] != "error" else "missing",
        "fallback CPU",
    ):
        table.add_column(name, justify="right")
    shown = r["jobs"] if len(r["jobs"]) <= 20 else r["jobs"][:10] + r["jobs"][-10:]
    for j in shown:
        if len(r["jobs"]) > 20 and j["job"] == r["jobs"][-10]["job"]:
            table.add_row("...", "", "", "", "", "", "")
        table.add_row(
            str(j["job"]),
            f"{j['share'][0]}..{j['share'][1] - 1}" if j["share_events"] else "-",
            fmt_int(j["share_events"]),
            str(j["start_position"]),
            fmt_int(j["from_pool"]),
            fmt_int(j["beyond_share"]),
            _duration(j["generate_seconds"]) if j["generated"] else "",
        )
    out.print(table)
    out.print(f"from pool  {fmt_int(r['from_pool'])} events")
    beyond = r["beyond_share"]
    if not beyond:
        out.print("[green]every job's share covers it: nothing generated or reused[/green]")
        return
    what = {
        "generate": "generated on the fly",
        "reuse": "reused (handed out again)",
        "error": "missing: those jobs fail",
    }[r["on_exhausted"]]
    out.print(f"beyond     {fmt_int(beyond)} events in {r['jobs_exceeding_share']} jobs, {what}")
    if r["on_exhausted"] == "generate":
        per = r["seconds_per_generated_event"]
        if per is None:
            out.print("CPU time   unknown: the pool's builds recorded no generation time")
        else:
            out.print(
                f"CPU time   {_duration(r['generate_seconds'])} in all, up to "
                f"{_duration(r['max_job_generate_seconds'])} per job "
                f"({per:.3g} s/event as built on {r['device_type']})"
            )
    out.print(f"to avoid it: build {fmt_int(r['events_to_add'])} more events into the pool")
