"""Tests of bgcache.plot: files written, formats, errors (skipped without matplotlib)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

import bgcache
from bgcache.errors import BgcacheError, MissingDependencyError, UsageError
from bgcache.hits import SparseEvent, sorted_event
from bgcache.models.synthetic import NOTE
from bgcache.plot import plot_pool
from bgcache.stats import PoolStatistics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def events() -> list[SparseEvent]:
    return bgcache.load_model("synthetic").events([(0, i) for i in range(4)])


@pytest.fixture(scope="module")
def stats(events: list[SparseEvent]) -> PoolStatistics:
    return PoolStatistics().add_events(events)


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR is the first chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_png_with_event(tmp_path: Path, stats: PoolStatistics, events: list[SparseEvent]) -> None:
    out = plot_pool(
        tmp_path / "pool.png",
        stats,
        event=events[0],
        model="synthetic",
        note=NOTE,
        event_label="key (0, 0)",
    )
    assert out == tmp_path / "pool.png"
    assert _png_size(out) == (1400, 1000)  # 14 x 10 in at 100 dpi
    assert 50_000 < out.stat().st_size < 2_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["pool.png"]  # no temporary file left


def test_png_without_event(tmp_path: Path, stats: PoolStatistics) -> None:
    out = plot_pool(str(tmp_path / "pool.png"), stats, title="a title")
    assert isinstance(out, Path)
    assert _png_size(out) == (1400, 550)
    assert 20_000 < out.stat().st_size < 1_000_000


def test_empty_statistics_and_event_plot_without_warnings(tmp_path: Path) -> None:
    out = plot_pool(tmp_path / "empty.png", PoolStatistics(), event=SparseEvent.empty())
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_event_with_charges_above_255(tmp_path: Path, stats: PoolStatistics) -> None:
    merged = bgcache.merge(SparseEvent([0], [0], [0], [250]), SparseEvent([0], [0], [0], [100]))
    out = plot_pool(tmp_path / "merged.png", stats, event=merged, dpi=40)
    assert _png_size(out) == (560, 400)


@pytest.mark.parametrize(
    ("suffix", "magic"),
    [pytest.param(".pdf", b"%PDF", id="pdf"), pytest.param(".svg", b"<?xml", id="svg")],
)
def test_other_formats(tmp_path: Path, stats: PoolStatistics, suffix: str, magic: bytes) -> None:
    out = plot_pool(tmp_path / f"pool{suffix.upper()}", stats)
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["pool.jpg", "pool", "pool.png.txt"])
def test_bad_suffix_is_a_usage_error(tmp_path: Path, stats: PoolStatistics, name: str) -> None:
    with pytest.raises(UsageError, match=r"must end in \.png, \.pdf or \.svg"):
        plot_pool(tmp_path / name, stats)
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_a_usage_error(tmp_path: Path, stats: PoolStatistics) -> None:
    target = tmp_path / "missing" / "pool.png"
    with pytest.raises(UsageError, match=r"cannot plot to .*missing.*does not exist"):
        plot_pool(target, stats)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_path_is_an_output_error(tmp_path: Path, stats: PoolStatistics) -> None:
    import os

    from bgcache.errors import OutputError

    blocker = tmp_path / f".pool.png.{os.getpid()}.tmp"  # the temporary name is a directory
    blocker.mkdir()
    with pytest.raises(OutputError, match=r"cannot write plot to .*pool\.png") as exc:
        plot_pool(tmp_path / "pool.png", stats)
    assert isinstance(exc.value, BgcacheError) and isinstance(exc.value, OSError)
    assert list(tmp_path.iterdir()) == [blocker]


def test_directory_as_path_is_a_usage_error(tmp_path: Path, stats: PoolStatistics) -> None:
    target = tmp_path / "dir.png"
    target.mkdir()
    with pytest.raises(UsageError, match=r"cannot plot to .* it is a directory"):
        plot_pool(target, stats)
    assert [p.name for p in tmp_path.iterdir()] == ["dir.png"]


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, stats: PoolStatistics, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'bgcache\[plot\]'"):
        plot_pool(tmp_path / "pool.png", stats)
    assert list(tmp_path.iterdir()) == []


def test_inspect_plot_without_matplotlib_fails_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    from bgcache.build import build_pool
    from bgcache.store.pool import Pool

    build_pool(tmp_path / "pool", model="synthetic", events=8)
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sample was read before the missing matplotlib was said")

    monkeypatch.setattr(Pool, "sample", no_reading)
    result = cli("inspect", str(tmp_path / "pool"), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 1, result.stderr
    assert "pip install 'bgcache[plot]'" in result.stderr
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("shift", [pytest.param(0, id="compatible"), pytest.param(9, id="differs")])
def test_every_text_of_the_comparison_figure_lies_inside_it(shift: int) -> None:
    """Panel (j)'s title ran past the figure's edge once; now nothing may, verdicts included."""
    from matplotlib.text import Text

    from bgcache.compare import compare_statistics
    from bgcache.plot import comparison_figure

    gen = bgcache.load_model("synthetic")
    a = PoolStatistics(clusters=True).add_events(gen.events([(1, i) for i in range(6)]))
    events = gen.events([(2, i) for i in range(6)])
    if shift:  # other hits: every quantity's verdict text at its longest
        events = [sorted_event(e.sensor, e.u, (e.v + shift) % 768, e.charge // 2 + 1)
                  for e in events]  # fmt: skip
    b = PoolStatistics(clusters=True).add_events(events)
    report = compare_statistics(a, b)
    side = {"url": "/data/pools/a-pool-with-a-long-name", "model": "synthetic", "sampled": 6}
    report |= {"pool": side, "reference": side | {"imported": True}}
    fig = comparison_figure(report, dpi=40)
    fig.canvas.draw()  # lays the labels out
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    ticks = {  # matplotlib's own, and not drawn where outside the axes' limits
        id(t)
        for ax in fig.axes
        for t in [*ax.xaxis.get_ticklabels(which="both"), *ax.yaxis.get_ticklabels(which="both")]
    }
    texts = [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and id(t) not in ticks
    ]
    assert len(texts) > 50  # titles, verdicts, legends, boxes, axis labels
    for t in texts:
        extent = t.get_window_extent(renderer)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, t.get_text()
        assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, t.get_text()
    if shift:
        assert report["verdict"]["compatible"] is False
