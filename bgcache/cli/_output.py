"""Shared output helpers of the command modules: rich consoles, JSON, number formats.

Imported only inside command functions (it imports rich), never at ``bgcache --version``.
Human-readable output goes to stdout; progress bars, spinners and notes go to stderr, so
``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def stdout_console() -> Console:
    """A console on stdout (no automatic highlighting of numbers and paths)."""
    return Console(highlight=False)


def stderr_console() -> Console:
    """A console on stderr, for progress, spinners and notes."""
    return Console(stderr=True, highlight=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def print_json(obj: Any) -> None:
    """Print one JSON document on stdout (numpy values converted).

    Example:
        >>> print_json({"n": np.int64(3)})
        {
          "n": 3
        }
    """
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def note(message: str, *, quiet: bool = False) -> None:
    """Print a note on stderr unless ``quiet``."""
    if not quiet:
        from rich.markup import escape

        stderr_console().print(
            f"[dim]bgcache:[/dim] {escape(message)}", markup=True, soft_wrap=True
        )


@contextmanager
def status(message: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while a long step runs (nothing when ``quiet``); yields
    ``update(line)``, which says which part of the step runs: the spinner's text on a
    terminal, a line of its own elsewhere (a log shows progress too)."""
    if quiet:
        yield lambda line: None
        return
    console = stderr_console()
    if not console.is_terminal:
        yield lambda line: note(f"{message} {line}")
        return
    with console.status(message) as spinner:
        yield lambda line: spinner.update(f"{message} {line}")


_LOG_WIDTH = 512  # columns of a progress frame off a terminal: wide enough never to wrap


class RateColumn(ProgressColumn):
    """Items (events, blocks) per second of a progress task."""

    def __init__(self, unit: str = "events") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        """The rate since the start as ``12.3 events/s`` (``-`` until known): an average,
        not rich's recent-window speed, which jumps when workers finish blocks at once."""
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(
            f"{fmt_rate(task.completed / elapsed)} {self.unit}/s", style="progress.data.speed"
        )


class Bar(Progress):
    """rich's progress display, whose frame off a terminal is left out when the work fails.

    Off a terminal rich draws one frame, when the bar stops; after a failure that frame would
    stand before the error line (a bar of how far the work got), and a failing command's
    error is to be its only line. On a terminal the bar stays as it was drawn.
    """

    def stop(self, *, failed: bool = False) -> None:
        """Stop the display; ``failed``: the work ended in an error (no frame off a terminal)."""
        if failed and not self.disable and not self.console.is_interactive:
            self.live.transient = True  # rich draws no frame of a transient display there
            self.live.stop()  # and not the empty line Progress.stop prints after the frame
            return
        super().stop()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.stop(failed=exc_type is not None)


def event_progress(*, quiet: bool = False, unit: str = "events") -> Bar:
    """A progress bar on stderr with count, rate (``unit``/s), elapsed time and ETA.

    Off a terminal (a log, a pipe) rich draws only the last frame, at the end, and at its
    default 80 columns a long count wrapped it over two lines; there it is one line as wide as
    it needs, so a log holds one record of the bar, and none when the work failed (:class:`Bar`).
    """
    console = stderr_console()
    if not console.is_terminal:
        console.width = _LOG_WIDTH
    return Bar(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


class BlockProgress:
    """What a build or an import shows while it runs: a spinner (``spin``) until the first
    progress call, then a bar of the events still to write (complete blocks already skipped
    are not counted). Call it as ``progress(done, total)`` inside ``with progress:`` (or call
    ``stop()`` at the end, always); work that fails leaves no frame off a terminal.
    """

    def __init__(self, label: str, spinner_text: str, *, quiet: bool, spin: bool = True) -> None:
        self.label = label
        self.bar = event_progress(quiet=quiet)
        self.spinner = stderr_console().status(spinner_text)
        self._task: Any = None
        self._skipped = 0
        self._started = False
        if spin and not quiet:
            self.spinner.start()

    def say(self, text: str) -> None:
        """Change the spinner's text (what the step before the bar is doing)."""
        self.spinner.update(text)

    def __call__(self, done: int, total: int) -> None:
        if not self._started:
            self._started = True
            self.spinner.stop()
            self._skipped = done
            if done == total:  # nothing to write: no empty 0/0 bar
                return
            self._task = self.bar.add_task(self.label, total=total - done)
            self.bar.start()
        if self._task is not None:
            self.bar.update(self._task, completed=done - self._skipped)

    def stop(self, *, failed: bool = False) -> None:
        """Stop the spinner and the bar (a bar never started is left alone: stopping it
        would still print a newline); ``failed``: see :meth:`Bar.stop`."""
        self.spinner.stop()
        if self._task is not None:
            self.bar.stop(failed=failed)

    def __enter__(self) -> BlockProgress:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.stop(failed=exc_type is not None)


def block_count_lines(r: dict[str, Any], verb: str) -> list[str]:
    """The lines of a build's or an import's summary that count what it did: ``verb``
    (built, imported) ... in ... blocks with the rate, and the complete blocks skipped.

    Example:
        >>> block_count_lines({"events_written": 1, "blocks_written": 1, "seconds": 0.5,
        ...     "events_per_second": 2.0, "blocks_skipped": 0}, "imported")
        ['imported   1 event in 1 block, 0.5 s, 2.00 events/s']
    """
    rate = r["events_per_second"]
    lines = [
        f"{verb:<10} {plural(r['events_written'], 'event')} in "
        f"{plural(r['blocks_written'], 'block')}, {r['seconds']:.1f} s"
        + (f", {fmt_rate(rate)} events/s" if rate else "")
    ]
    if r["blocks_skipped"]:
        lines.append(
            f"skipped    {plural(r['events_skipped'], 'event')} in "
            f"{plural(r['blocks_skipped'], 'block')} that were already complete"
        )
    return lines


def fmt_rate(x: float) -> str:
    """A rate with three significant digits and no exponent.

    Example:
        >>> fmt_rate(1637.2), fmt_rate(90.54), fmt_rate(4.512), fmt_rate(0.2214)
        ('1,637', '90.5', '4.51', '0.221')
    """
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{max(0, 2 - math.floor(math.log10(x)))}f}" if x > 0 else "0"


def plural(n: int, word: str) -> str:
    """``n word`` with an English plural.

    Example:
        >>> plural(1, "block"), plural(3, "block")
        ('1 block', '3 blocks')
    """
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def fmt_int(n: int) -> str:
    """Thousands-separated integer.

    Example:
        >>> fmt_int(20444865)
        '20,444,865'
    """
    return f"{n:,}"


def fmt_pct(x: float | None, digits: int = 3) -> str:
    """A fraction as a percentage (``-`` for None).

    Example:
        >>> fmt_pct(0.009123)
        '0.912 %'
    """
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def fmt_bytes(n: int) -> str:
    """A byte count with a binary unit.

    Example:
        >>> fmt_bytes(81_812_345)
        '78.0 MiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover
