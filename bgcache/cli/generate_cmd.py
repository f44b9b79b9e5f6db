"""``bgcache generate``: generate events of a model and print a summary.

Until the pool store exists this is the main job: it runs a generator on a stream of
event keys (seed, first_index ... first_index + events - 1), one event at a time, and
compares occupancy and charge with the Geant4 reference figures.

Options can also come from environment variables (``BGCACHE_MODEL``, ``BGCACHE_SEED``...)
and from a config file (``--config``, see :mod:`bgcache.cli._config`).
"""

from __future__ import annotations

import time
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
)


def generate(
    model: ModelOption,
    checkpoint: CheckpointOption = None,
    seed: SeedOption = 0,
    events: Annotated[
        int,
        typer.Option(
            "--events", "-n", min=1, envvar="BGCACHE_EVENTS", help="Number of events to generate."
        ),
    ] = 10,
    first_index: Annotated[
        int,
        typer.Option(
            "--first-index",
            min=0,
            envvar="BGCACHE_FIRST_INDEX",
            help="Index of the first event key.",
        ),
    ] = 0,
    device: DeviceOption = "cpu",
    nintra: NintraOption = 1,
    ninter: NinterOption = 1,
    optimize: OptimizeOption = True,
    precision: PrecisionOption = "auto",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Generate events with a model and compare them with the Geant4 reference.

    Event keys are (SEED, FIRST_INDEX) ... (SEED, FIRST_INDEX + EVENTS - 1);
    an event depends only on its key, the model and the checkpoint. The
    summary gives events/s, hits per event, occupancy per layer (layer 1:
    sensors 0-15, layer 2: sensors 16-39) and overall, and the mean charge
    of fired pixels, each next to the Geant4 reference. GAN models need
    torch and a checkpoint ('bgcache checkpoint init' makes an untrained
    demo one); synthetic needs neither and is NOT a physics model.

    Option values come from the command line, else from environment
    variables (BGCACHE_SEED, BGCACHE_EVENTS...), else from the config file
    (--config or BGCACHE_CONFIG), else from the defaults shown below.

    [bold]Examples[/bold]

        bgcache generate --model synthetic --events 200
        bgcache generate -m synthetic --seed 42 --first-index 1000 -n 50 --json
        bgcache checkpoint init --model convnet -o demo.pt
        bgcache generate -m convnet -c demo.pt --events 3 --nintra 2
        bgcache generate --config configs/demo.toml
        bgcache generate --config configs/demo.toml -n 5 --json
        BGCACHE_CONFIG=configs/convnet-cpu.toml bgcache generate --nintra 2
    """
    from bgcache.cli._output import event_progress, note, print_json, status
    from bgcache.cli._summary import EventSummary
    from bgcache.models import get_spec, load_model, validate_threads
    from bgcache.seeding import EventKey, validate_index, validate_seed

    del config  # already applied: its callback made the file's values the options' defaults
    seed = validate_seed(seed)
    nintra, ninter = validate_threads(nintra, ninter)
    first_index = validate_index(first_index)
    validate_index(first_index + events - 1)
    spec = get_spec(model)
    if checkpoint is not None and not spec.needs_checkpoint:
        note(f"model {model!r} takes no checkpoint: ignoring --checkpoint", quiet=quiet)
        checkpoint = None

    t0 = time.perf_counter()
    with status(f"loading {model}...", quiet=quiet or not spec.needs_torch):
        gen = load_model(
            model,
            checkpoint,
            device=device,
            optimize=optimize,
            nintra=nintra,
            ninter=ninter,
            precision=precision,
        )
    load_seconds = time.perf_counter() - t0
    if spec.needs_torch and precision == "auto":
        note(f"precision {gen.precision} (auto: {gen.precision_reason})", quiet=quiet)

    summary = EventSummary()
    t0 = time.perf_counter()
    with event_progress(quiet=quiet) as progress:
        task = progress.add_task(f"generating {model}", total=events)
        for index in range(first_index, first_index + events):
            (event,) = gen.events([EventKey(seed, index)])
            summary.add(event)
            progress.advance(task)
    seconds = time.perf_counter() - t0

    metadata: dict[str, Any] = dict(gen.metadata())
    physics = bool(metadata.get("physics_model", spec.physics))
    result: dict[str, Any] = {
        "model": model,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "seed": seed,
        "first_index": first_index,
        "events": events,
        "device": device,
        "optimize": optimize,
        "precision": metadata.get("precision", "fp32"),
        "nintra": nintra,
        "ninter": ninter,
        "load_seconds": load_seconds,
        "seconds": seconds,
        "events_per_second": events / seconds if seconds > 0 else None,
        **summary.to_dict(_reference()),
        "physics_model": physics,
        "note": None if physics else _not_physics_note(metadata),
        "metadata": metadata,
    }
    if json_output:
        print_json(result)
    else:
        _print_summary(result)


def _reference() -> dict[str, Any]:
    from bgcache.reference import load_reference

    return dict(load_reference())


def _not_physics_note(metadata: dict[str, Any]) -> str:
    if metadata.get("untrained"):
        return "UNTRAINED demo network — not a physics model"
    text = metadata.get("note")
    return str(text) if text else "not a physics model"


def _print_summary(r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from bgcache.cli._output import fmt_int, fmt_pct, stdout_console

    out = stdout_console()
    last = r["first_index"] + r["events"] - 1
    source = f", checkpoint {escape(r['checkpoint'])}" if r["checkpoint"] else ""
    out.print(
        f"[bold]{r['events']} events[/bold] of model [bold]{r['model']}[/bold]{source}, "
        f"keys (seed {r['seed']}, index {r['first_index']}..{last})"
    )
    rate = r["events_per_second"]
    out.print(
        f"time       {r['seconds']:.2f} s, {rate:.3g} events/s"
        if rate
        else f"time       {r['seconds']:.2f} s"
    )
    h = r["hits_per_event"]
    out.print(f"hits/event {fmt_int(round(h['mean']))} ± {fmt_int(round(h['std']))}")

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    table.add_column("measured", justify="right")
    table.add_column("Geant4 reference", justify="right")
    labels = {"layer1": "occupancy layer 1", "layer2": "occupancy layer 2", "overall": "occupancy"}
    for key, label in labels.items():
        o = r["occupancy"][key]
        table.add_row(label, fmt_pct(o["measured"]), fmt_pct(o["reference"]))
    c = r["mean_charge"]
    ref_charge = "-" if c["reference"] is None else f"{c['reference']:.1f} ADU"
    table.add_row("mean charge", f"{c['measured']:.1f} ADU", ref_charge)
    out.print(table)
    if r["note"]:
        out.print(f"[bold red]note:[/bold red] {escape(r['note'])}", soft_wrap=True)
