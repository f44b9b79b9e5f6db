"""Pool figures: files written, formats, the optional hitmap, and bad output paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgcache.errors import BgcacheError, UsageError
from bgcache.models import load_model
from bgcache.stats import PoolStatistics

pytest.importorskip("matplotlib")

from bgcache.plot import plot_pool


@pytest.fixture(scope="module")
def stats_and_event() -> tuple[PoolStatistics, object]:
    events = load_model("synthetic").events([(0, i) for i in range(3)])
    return PoolStatistics().add_events(events), events[0]


def test_png_with_hitmap(tmp_path: Path, stats_and_event: tuple[PoolStatistics, object]) -> None:
    stats, event = stats_and_event
    out = plot_pool(
        tmp_path / "p.png", stats, event=event, model="synthetic", note="NOT a physics model"
    )  # type: ignore[arg-type]
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 50_000 < len(data) < 5_000_000
    without = plot_pool(tmp_path / "q.png", stats).read_bytes()
    assert len(without) < len(data)  # no hitmap panel
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over


@pytest.mark.parametrize(("suffix", "magic"), [(".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_other_formats(
    tmp_path: Path, stats_and_event: tuple[PoolStatistics, object], suffix: str, magic: bytes
) -> None:
    out = plot_pool(tmp_path / f"p{suffix}", stats_and_event[0])
    assert out.read_bytes().startswith(magic)


def test_bad_suffix_and_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"must end in \.png"):
        plot_pool(tmp_path / "p.jpg", PoolStatistics())
    assert not (tmp_path / "p.jpg").exists()
    with pytest.raises(BgcacheError, match="cannot write plot"):
        plot_pool(tmp_path / "missing-dir" / "p.png", PoolStatistics())
