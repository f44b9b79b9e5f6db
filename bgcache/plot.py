"""Figures of a pool: occupancy and charge spectrum against the reference, event hitmaps,
and a pool against a reference pool.

This module owns the plots bgcache draws (:func:`plot_pool`, :func:`plot_comparison`). It sits on top of
:mod:`bgcache.stats` (the figures it shows) and needs the optional ``plot`` extra:
matplotlib is imported inside the functions, and only its object-oriented API with the
Agg canvas is used, so global pyplot state is never touched and no display is needed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bgcache.errors import MissingDependencyError, OutputError, UsageError
from bgcache.geometry import LADDERS, N_SENSORS, N_U, N_V, SENSORS_PER_LADDER, sensor_index
from bgcache.hits import SparseEvent
from bgcache.stats import LAYER_SENSORS, N_CHARGE_BINS, PoolStatistics, compare_with_reference

#: File types :func:`plot_pool` writes, chosen by the path's suffix.
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
#: Pixels per side of the square blocks a hitmap is max-pooled over.
HITMAP_POOLING = 4

_POOL_COLOUR = "#1f77b4"
_REF_COLOUR = "#d62728"


def _matplotlib() -> dict[str, Any]:
    """The matplotlib pieces used here, imported lazily."""
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import LogNorm
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError as exc:
        raise MissingDependencyError(
            f"plotting needs matplotlib, which cannot be imported ({exc}): "
            "pip install 'bgcache[plot]'"
        ) from exc
    return {
        "Figure": Figure,
        "FigureCanvasAgg": FigureCanvasAgg,
        "LogNorm": LogNorm,
        "Rectangle": Rectangle,
        "colormaps": colormaps,
    }


def plot_pool(
    path: str | os.PathLike[str],
    stats: PoolStatistics,
    *,
    event: SparseEvent | None = None,
    reference: Mapping[str, Any] | None = None,
    title: str | None = None,
    model: str | None = None,
    note: str | None = None,
    event_label: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw a pool's statistics against the Geant4 reference, and optionally one event.

    Panels: (a) occupancy per sensor in %, pool vs reference, layer boundary marked;
    (b) charge spectrum of fired pixels, pool vs reference, log scale, with the KS
    distance; (c) if ``event`` is given, its hitmap: layer 1 (8 ladders) and layer 2
    (12 ladders) side by side, each ladder a column of its two sensors (u across, v down),
    max-pooled over 4 x 4 pixels, charge on a log colour scale, each sensor labelled
    layer.ladder.sensor. The file type follows the suffix (.png, .pdf or .svg).

    Args:
        path: output file; written atomically (a temporary file renamed into place).
        stats: statistics of the pool (see :class:`bgcache.stats.PoolStatistics`).
        event: one event to draw as a hitmap (panel c), or None.
        reference: reference figures (default:
            :func:`bgcache.reference.load_reference`).
        title: figure title (default: built from ``model`` and the number of events).
        model: model name shown in the default title.
        note: shown prominently under the title, e.g. that the pool is not a physics model.
        event_label: names the event in panel (c), e.g. its key.
        dpi: resolution of a PNG (figure size is 14 x 10 in, 14 x 5.5 without event).

    Returns:
        The path written.

    Raises:
        UsageError: if the suffix is not .png, .pdf or .svg.
        MissingDependencyError: if matplotlib is not installed.
        OutputError: if the file cannot be written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = plot_pool(Path(tmp) / "pool.png", PoolStatistics(), model="synthetic")
        ...     out.name, out.read_bytes()[:4] == b"\\x89PNG"
        ('pool.png', True)
        >>> plot_pool("pool.jpg", PoolStatistics())
        Traceback (most recent call last):
        ...
        bgcache.errors.UsageError: cannot plot to 'pool.jpg': the file name must end in .png, .pdf or .svg
    """
    out = check_plot_path(path)
    mpl = _matplotlib()
    comparison = compare_with_reference(stats, reference)
    height = 10.0 if event is not None else 5.5
    fig = mpl["Figure"](figsize=(14.0, height), dpi=dpi)
    mpl["FigureCanvasAgg"](fig)
    if title is None:
        name = f"model {model!r}" if model else "bgcache pool"
        title = f"PXD beam background: {name}, {stats.n_events:,} events"
    fig.suptitle(title, fontsize=15, fontweight="bold", y=1 - 0.18 / height)
    top = 1 - 0.75 / height
    if note:
        fig.text(
            0.5,
            1 - 0.5 / height,
            "\n".join(textwrap.wrap(f"NOTE: {note}", 150)),
            ha="center",
            va="center",
            fontsize=10.5,
            color="#8b0000",
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "#fff3cd", "edgecolor": "#8b0000"},
        )
        top = 1 - 1.05 / height
    # Top row: panels (a) and (b); bottom: the hitmap, with room for its colour bar.
    split = 0.1 if event is None else 0.55
    grid = fig.add_gridspec(1, 2, left=0.06, right=0.98, top=top, bottom=split, wspace=0.2)
    _draw_occupancy(fig.add_subplot(grid[0, 0]), comparison)
    _draw_spectrum(fig.add_subplot(grid[0, 1]), comparison)
    if event is not None:
        lower = fig.add_gridspec(1, 1, left=0.06, right=0.93, top=split - 0.08, bottom=0.04)
        _draw_hitmap(fig, lower[0, 0], event, event_label, mpl)
    _save(fig, out, dpi)
    return out


def _save(fig: Any, out: Path, dpi: int) -> None:
    """Write the figure atomically (a temporary file renamed over ``out``)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format=out.suffix.lower()[1:], dpi=dpi)
        tmp.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write plot to {str(out)!r}: {reason}") from exc


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """Check a plot's output path before any work: its suffix, that it can be a file, that
    a file can be made in its directory (an empty probe file, removed at once: a read-only
    or virtual file system such as /proc is told now, not after minutes of sampling), and
    that matplotlib can be imported.

    Raises:
        UsageError: the suffix is not .png, .pdf or .svg; the path is a directory; its
            directory does not exist, is a file, or takes no new file.
        MissingDependencyError: matplotlib is not installed.

    Example:
        >>> check_plot_path("pool.svg").name
        'pool.svg'
        >>> check_plot_path("no-such-dir/pool.png")
        Traceback (most recent call last):
        ...
        bgcache.errors.UsageError: cannot plot to 'no-such-dir/pool.png': directory 'no-such-dir' does not exist; create it first
    """
    out = Path(path)
    where = f"cannot plot to {str(out)!r}"
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"{where}: the file name must end in .png, .pdf or .svg")
    if out.is_dir():
        raise UsageError(f"{where}: it is a directory; give a file name such as pool.png")
    parent = out.parent
    if not parent.exists():
        raise UsageError(f"{where}: directory {str(parent)!r} does not exist; create it first")
    if not parent.is_dir():
        raise UsageError(f"{where}: {str(parent)!r} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".probe")
    except OSError as exc:
        raise UsageError(
            f"{where}: no file can be made in {str(parent)!r} ({exc.strerror or exc}); "
            "give a path in a writable directory"
        ) from None
    os.close(fd)
    Path(probe).unlink()
    _matplotlib()  # a missing matplotlib is said now, not after the sample is read
    return out


def _draw_occupancy(ax: Any, comparison: Mapping[str, Any]) -> None:
    sensors = comparison["sensors"]
    x = np.arange(N_SENSORS)
    occ = 100 * np.array([s["occupancy"] for s in sensors])
    ref = 100 * np.array([s["reference_occupancy"] for s in sensors])
    ax.step(x, ref, where="mid", color=_REF_COLOUR, lw=1.8, label="Geant4 reference")
    ax.plot(x, occ, "o", color=_POOL_COLOUR, ms=5, label="pool")
    boundary = LAYER_SENSORS[2].start - 0.5
    ax.axvline(boundary, color="0.4", ls="--", lw=1)
    top = 1.25 * max(float(ref.max()), float(occ.max()))
    ax.set_ylim(0, top)
    for layer in comparison["layers"]:
        centre = (layer["first_sensor"] + layer["last_sensor"]) / 2
        ratio = layer["occupancy_ratio"]
        text = f"layer {layer['layer']}: {100 * layer['occupancy']:.3f} %"
        text += f"\n(pool / ref = {ratio:.3f})" if ratio is not None else ""
        ax.text(centre, 0.97 * top, text, ha="center", va="top", fontsize=9.5)
    ax.set_xlim(-0.7, N_SENSORS - 0.3)
    ax.set_xticks(range(0, N_SENSORS, 2))
    ax.set_xticks(range(N_SENSORS), minor=True)
    ax.set_xlabel("sensor index (layer 1: 0-15, layer 2: 16-39; 2 sensors per ladder)")
    ax.set_ylabel("occupancy per sensor [%]")
    ax.set_title("(a) occupancy per sensor", loc="left", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", fontsize=9.5)


def _draw_spectrum(ax: Any, comparison: Mapping[str, Any]) -> None:
    spec = comparison["charge_spectrum"]
    overall = comparison["overall"]
    adu = np.arange(N_CHARGE_BINS)
    measured = np.array(spec["measured"], dtype=np.float64)
    expected = np.array(spec["reference"], dtype=np.float64)
    measured[measured <= 0] = np.nan  # log scale: leave empty bins out
    expected[expected <= 0] = np.nan
    ref_label = f"Geant4 reference (mean {overall['reference_mean_charge']:.2f} ADU)"
    ax.step(adu, expected, where="mid", color=_REF_COLOUR, lw=1.8, label=ref_label)
    pool_label = f"pool (mean {overall['mean_charge']:.2f} ADU)"
    ax.step(adu, measured, where="mid", color=_POOL_COLOUR, lw=1.2, label=pool_label)
    ax.set_yscale("log")
    ax.set_xlim(0, N_CHARGE_BINS)
    ax.set_xlabel("charge [ADU]")
    ax.set_ylabel("fraction of fired pixels per ADU")
    ax.set_title("(b) charge spectrum of fired pixels", loc="left", fontsize=12)
    ax.grid(alpha=0.3, which="major")
    ks = spec["ks_statistic"]
    summary = "no hits" if ks is None else f"KS distance = {ks:.4f}"
    below = spec["fraction_below_threshold"]
    if below:
        summary += f"\n{100 * below:.2f} % of hits below {spec['reference_threshold']} ADU"
    ax.text(
        0.98,
        0.72,
        summary,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=9.5,
        bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
    )
    ax.legend(loc="upper right", fontsize=9.5)


def _pooled_images(event: SparseEvent) -> np.ndarray:
    """Per-sensor max-pooled charges, shape (40, ceil(250/f), 768/f), float with NaN = no hit."""
    f = HITMAP_POOLING
    nu = -(-N_U // f)
    dense = np.zeros((N_SENSORS, nu * f, N_V), dtype=np.float64)
    dense[event.sensor, event.u, event.v] = event.charge
    pooled: np.ndarray = dense.reshape(N_SENSORS, nu, f, N_V // f, f).max(axis=(2, 4))
    pooled[pooled <= 0] = np.nan
    return pooled


def _draw_hitmap(
    fig: Any, spec: Any, event: SparseEvent, label: str | None, mpl: Mapping[str, Any]
) -> None:
    pooled = _pooled_images(event)
    _, nu, nv = pooled.shape
    gap_u, gap_v = max(nu // 6, 2), max(nv // 24, 2)
    low = float(event.charge.min()) if event.n_hits else 1.0
    high = max(float(event.charge.max()) if event.n_hits else 255.0, 2 * low)
    norm = mpl["LogNorm"](vmin=low, vmax=high)
    cmap = mpl["colormaps"]["plasma"].with_extremes(bad=(0, 0, 0, 0))
    widths = [n * nu + (n - 1) * gap_u for n in LADDERS.values()]
    sub = spec.subgridspec(1, 2, width_ratios=widths, wspace=0.03)
    image = None
    axes = []
    for column, (layer, n_ladders) in enumerate(LADDERS.items()):
        ax = fig.add_subplot(sub[0, column])
        axes.append(ax)
        canvas = np.full((SENSORS_PER_LADDER * nv + gap_v, widths[column]), np.nan)
        for ladder in range(1, n_ladders + 1):
            x0 = (ladder - 1) * (nu + gap_u)
            for sensor in range(1, SENSORS_PER_LADDER + 1):
                y0 = (sensor - 1) * (nv + gap_v)
                index = sensor_index(layer, ladder, sensor)
                canvas[y0 : y0 + nv, x0 : x0 + nu] = pooled[index].T
                ax.add_patch(
                    mpl["Rectangle"](
                        (x0 - 0.5, y0 - 0.5), nu, nv, facecolor="0.93", edgecolor="0.6", lw=0.6
                    )
                )
                ax.text(
                    x0 + 1.5,
                    y0 + 2,
                    f"{layer}.{ladder}.{sensor}",
                    ha="left",
                    va="top",
                    fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.8},
                )
        image = ax.imshow(
            canvas, cmap=cmap, norm=norm, interpolation="nearest", aspect="equal", zorder=2
        )
        ax.set_xticks([(ladder - 1) * (nu + gap_u) + nu / 2 for ladder in range(1, n_ladders + 1)])
        ax.set_xticklabels([str(ladder) for ladder in range(1, n_ladders + 1)], fontsize=8)
        ax.set_anchor("C")
        if column == 0:
            ax.set_yticks([nv / 2, nv + gap_v + nv / 2])
            ax.set_yticklabels(["sensor 1", "sensor 2"], fontsize=8, rotation=90, va="center")
        else:
            ax.set_yticks([])
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        first, stop = LAYER_SENSORS[layer].start, LAYER_SENSORS[layer].stop
        n_layer = int(((event.sensor >= first) & (event.sensor < stop)).sum())
        ax.set_xlabel(f"layer {layer} ladder ({n_layer:,} hits)", fontsize=9.5)
    what = f"one event{f' ({label})' if label else ''}: {event.n_hits:,} hits"
    axes[0].set_title(
        f"(c) hitmap of {what}; u across, v down, max charge per "
        f"{HITMAP_POOLING} x {HITMAP_POOLING} pixels",
        loc="left",
        fontsize=12,
    )
    cax = axes[-1].inset_axes((1.015, 0.0, 0.018, 1.0))  # follows the image's box
    colourbar = fig.colorbar(image, cax=cax)
    ticks = [t for t in (1, 2, 5, 7, 10, 20, 50, 100, 200, 500, 1000) if low <= t <= high]
    colourbar.set_ticks(ticks, labels=[str(t) for t in ticks])
    colourbar.set_label("charge [ADU] (log scale)")


__all__ = ["HITMAP_POOLING", "PLOT_SUFFIXES", "comparison_figure", "plot_comparison", "plot_pool"]


#: Panels of :func:`plot_comparison` after the occupancy: (distribution, log scale).
_COMPARED = (
    ("hits_per_event", False),
    ("clusters_per_event", False),
    ("charge", True),
    ("cluster_size", True),
    ("cluster_charge", True),
    ("cluster_extent_u", True),
    ("cluster_extent_v", True),
)


def plot_comparison(
    path: str | os.PathLike[str], report: Mapping[str, Any], *, dpi: int = 110
) -> Path:
    """One figure of a :func:`bgcache.compare.compare_pools` report, pool against reference.

    Under the title, the global verdict (green: compatible, red: differs). Panels: (a)
    occupancy per sensor with error bars, and the ratio below it; (b)-(h) hits and clusters
    per event, pixel charge, cluster size, charge and extent in u and v (step histograms,
    normalised; log scale where counts span decades; the last bin of a cluster panel also
    counts what is above it), each with its KS and W1 distance; (i) the correlation of
    sensor occupancies (pool above the diagonal, reference below) and (j) the Fisher-z pull
    of each pair. Each panel's title ends in its quantity's verdict, and its test and
    p-value stand beside the data.

    Returns:
        The path written.

    Raises:
        UsageError: a bad path. MissingDependencyError: no matplotlib. OutputError: the
            file cannot be written.
    """
    out = check_plot_path(path)
    _save(comparison_figure(report, dpi=dpi), out, dpi)
    return out


def comparison_figure(report: Mapping[str, Any], *, dpi: int = 110) -> Any:
    """The figure :func:`plot_comparison` writes (a matplotlib ``Figure`` on an Agg canvas).

    Raises:
        MissingDependencyError: no matplotlib.
    """
    mpl = _matplotlib()
    fig = mpl["Figure"](figsize=(18.0, 16.5), dpi=dpi)
    mpl["FigureCanvasAgg"](fig)
    pool, ref = report["pool"], report["reference"]

    def label(side: Mapping[str, Any]) -> str:
        kind = "imported" if side.get("imported") else side.get("model")
        return f"{Path(str(side.get('url'))).name} ({kind})"

    fig.suptitle(
        f"PXD beam background: {label(pool)} against {label(ref)}, "
        f"{pool['sampled']:,} and {ref['sampled']:,} events",
        fontsize=15,
        fontweight="bold",
        y=0.988,
    )
    verdict = report["verdict"]
    sentence = "\n".join(textwrap.wrap(f"verdict: {verdict['verdict']}", 160))
    fig.text(0.5, 0.961, sentence, ha="center", va="center",
             fontsize=11.5, color=_verdict_colour(verdict["compatible"]),
             bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "0.7"})  # fmt: skip
    grid = fig.add_gridspec(
        4, 3, left=0.05, right=0.96, top=0.92, bottom=0.065, hspace=0.48, wspace=0.27
    )
    occupancy = grid[0, :].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
    _draw_occupancy_pair(
        fig.add_subplot(occupancy[0]),
        fig.add_subplot(occupancy[1]),
        report,
        label(pool),
        label(ref),
    )
    cells = [grid[r, c] for r in (1, 2) for c in range(3)] + [grid[3, 0]]
    for n, ((name, log), cell) in enumerate(zip(_COMPARED, cells, strict=True)):
        _draw_distribution(
            fig.add_subplot(cell),
            report["distributions"][name],
            report["tests"][name],
            log,
            "bcdefgh"[n],
        )
    _draw_correlation(fig, grid[3, 1], grid[3, 2], report, mpl)
    return fig


def _verdict_colour(compatible: bool | None) -> str:
    return "0.3" if compatible is None else ("#1a7f37" if compatible else "#b00020")


def _test_line(test: Mapping[str, Any]) -> str:
    """A test's statistic and p-value in one line, for a panel."""
    from bgcache.compare import format_test

    statistic, p_value, _ = format_test(test)
    if not p_value:
        return f"not tested: {test.get('reason', '')}"
    return f"{statistic}, p = {p_value}"


def _title(ax: Any, text: str, test: Mapping[str, Any], size: float = 12) -> None:
    """A panel's title: what it shows, then its verdict in the verdict's colour."""
    ax.set_title(text, loc="left", fontsize=size)
    ax.set_title(test["verdict"], loc="right", fontsize=size - 1,
                 color=_verdict_colour(test["compatible"]), fontweight="bold")  # fmt: skip


def _draw_occupancy_pair(
    ax: Any, ratio_ax: Any, report: Mapping[str, Any], pool_label: str, ref_label: str
) -> None:
    sensors = report["occupancy"]["sensors"]
    tests = report["tests"]
    x = np.arange(N_SENSORS)

    def get(key: str) -> np.ndarray:
        return np.array([np.nan if s[key] is None else s[key] for s in sensors], dtype=np.float64)

    ax.errorbar(x - 0.12, 100 * get("reference"), yerr=100 * get("reference_error"), fmt="s", ms=4,
                color=_REF_COLOUR, label=ref_label, capsize=2)  # fmt: skip
    ax.errorbar(x + 0.12, 100 * get("pool"), yerr=100 * get("pool_error"), fmt="o", ms=4,
                color=_POOL_COLOUR, label=pool_label, capsize=2)  # fmt: skip
    boundary = LAYER_SENSORS[2].start - 0.5
    for a in (ax, ratio_ax):
        a.axvline(boundary, color="0.4", ls="--", lw=1)
        a.set_xlim(-0.7, N_SENSORS - 0.3)
        a.set_xticks(range(0, N_SENSORS, 2))
        a.grid(alpha=0.3)
    ax.set_ylim(0, None)
    ax.set_ylabel("occupancy [%]")
    ax.tick_params(labelbottom=False)
    per_sensor, overall = tests["occupancy_per_sensor"], tests["occupancy"]
    _title(
        ax,
        "(a) occupancy per sensor (mean over events ± standard error); per sensor: "
        f"{_test_line(per_sensor)}; all sensors: {_test_line(overall)}, {overall['verdict']}",
        per_sensor,
    )
    for layer in report["occupancy"]["layers"]:
        centre = (layer["first_sensor"] + layer["last_sensor"]) / 2
        r = layer["ratio"]
        test = tests[f"occupancy_layer_{layer['layer']}"]
        text = f"layer {layer['layer']}: pool / reference = " + (
            "-" if r is None else f"{r:.3f} ± {layer['ratio_error']:.3f}"
        )
        ax.text(centre, 0.04, f"{text}; {test['verdict']}", transform=ax.get_xaxis_transform(),
                ha="center", fontsize=10, color=_verdict_colour(test["compatible"]))  # fmt: skip
    ax.legend(loc="upper right", fontsize=9.5)
    ratio_ax.errorbar(x, get("ratio"), yerr=get("ratio_error"), fmt="o", ms=3, color="k", capsize=2)
    ratio_ax.axhline(1.0, color=_REF_COLOUR, lw=1)
    ratio_ax.set_ylabel("pool / ref")
    ratio_ax.set_xlabel("sensor index (layer 1: 0-15, layer 2: 16-39)")


def _draw_distribution(
    ax: Any, d: Mapping[str, Any], test: Mapping[str, Any], log: bool, letter: str
) -> None:
    edges = np.asarray(d["bin_edges"], dtype=np.float64)
    pool = np.asarray(d["pool_histogram"], dtype=np.float64)
    ref = np.asarray(d["reference_histogram"], dtype=np.float64)
    if log:  # integer bins: drop the empty tail so the panel shows the data
        filled = np.flatnonzero((pool > 0) | (ref > 0))
        stop = int(filled[-1]) + 2 if filled.size else 2
        edges, pool, ref = edges[:stop], pool[: stop - 1], ref[: stop - 1]
        pool = np.where(pool > 0, pool, np.nan)
        ref = np.where(ref > 0, ref, np.nan)
    ax.stairs(ref, edges, color=_REF_COLOUR, lw=1.8,
              label=f"reference (mean {_number(d['reference_mean'])})")  # fmt: skip
    ax.stairs(
        pool, edges, color=_POOL_COLOUR, lw=1.2, label=f"pool (mean {_number(d['pool_mean'])})"
    )
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(
        f"{d['label']} [{d['unit']}]" + (" (last bin: overflow)" if d["overflow"] else "")
    )
    ax.set_ylabel("fraction per bin")
    _title(ax, f"({letter}) {d['label']}", test)
    ax.grid(alpha=0.3)
    ks, w1 = d["ks"], d["wasserstein_1"]
    text = "no entries" if ks is None else f"KS = {ks:.4f}\nW1 = {_number(w1)} {d['unit']}"
    text += f"\n{_test_line(test)}"
    if test.get("design_effect_measured"):
        text += f"\ndesign effect {test['design_effect']:.2f}"
    ax.text(0.97, 0.62, text, transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})  # fmt: skip
    ax.legend(loc="upper right", fontsize=9)


def _number(x: float) -> str:
    """A figure for a legend: thousands separated, else four significant digits."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


#: Colour range of the pull panel, in sigma.
_PULL_RANGE = 5.0


def _draw_correlation(
    fig: Any, left: Any, right: Any, report: Mapping[str, Any], mpl: dict[str, Any]
) -> None:
    c, test = report["correlation"], report["tests"]["correlation"]

    def matrix(key: str) -> np.ndarray:
        return np.array(
            [[np.nan if x is None else x for x in row] for row in c[key]], dtype=np.float64
        )

    pool, ref = matrix("pool"), matrix("reference")
    both = np.where(np.triu(np.ones_like(pool, dtype=bool), 1), pool, ref)
    np.fill_diagonal(both, np.nan)
    ax = fig.add_subplot(left)
    # aspect "auto": the matrices fill their cells, so that the titles have the cells' width
    image = ax.imshow(both, cmap="RdBu_r", vmin=-1, vmax=1, origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label="rho")
    ax.set_title("(i) occupancy correlation: pool above, reference below", loc="left",
                 fontsize=11)  # fmt: skip
    pulls = matrix("pull")
    ax2 = fig.add_subplot(right)
    image2 = ax2.imshow(pulls, cmap="PuOr_r", vmin=-_PULL_RANGE, vmax=_PULL_RANGE,
                        origin="lower", aspect="auto")  # fmt: skip
    fig.colorbar(image2, ax=ax2, fraction=0.05, pad=0.03, extend="both",
                 label="pull: (z_pool - z_ref) / sigma")  # fmt: skip
    _title(ax2, "(j) correlation pulls, z = atanh(rho)", test, size=11)
    ax2.text(
        0.0,
        -0.17,
        f"{test['beyond_3_sigma']} of {test['pairs']} pairs beyond 3 sigma "
        f"({test['expected_beyond_3_sigma']:.1f} by chance)\n{_test_line(test)}",
        transform=ax2.transAxes,
        ha="left",
        va="top",
        fontsize=9.5,
    )
    for a in (ax, ax2):
        a.axvline(LAYER_SENSORS[2].start - 0.5, color="0.3", lw=0.8)
        a.axhline(LAYER_SENSORS[2].start - 0.5, color="0.3", lw=0.8)
        a.set_xlabel("sensor index")
        a.set_ylabel("sensor index")
