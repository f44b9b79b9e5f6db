"""``bgcache compare``: clusters, the statistics with errors, the distances, the report,
the command line and its figure; real pools on disk."""

from __future__ import annotations

import json
import math
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bgcache import load_model, open_pool
from bgcache.build import build_pool
from bgcache.clusters import BATCHES, ClusterStatistics, cluster_labels, find_clusters
from bgcache.compare import DISTRIBUTIONS, QUANTITIES, compare_pools, compare_statistics, gather
from bgcache.errors import MissingDependencyError, UsageError
from bgcache.geometry import N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR
from bgcache.hits import SparseEvent
from bgcache.stats import PoolStatistics, sample_distances, wasserstein_1
from bgcache.store.pool import Pool
from bgcache.store.writer import create_or_open_pool

Invoke = Callable[..., Any]


def flood_fill_clusters(event: SparseEvent) -> list[tuple[int, int, int, int, int]]:
    """(sensor, size, charge, u extent, v extent) of each cluster, by a plain flood fill."""
    dense = event.to_dense()
    seen = np.zeros(dense.shape, dtype=bool)
    out = []
    for s, u, v in zip(event.sensor.tolist(), event.u.tolist(), event.v.tolist(), strict=True):
        if seen[s, u, v]:
            continue
        seen[s, u, v] = True
        todo, pixels = deque([(u, v)]), []
        while todo:
            a, b = todo.popleft()
            pixels.append((a, b))
            for da in (-1, 0, 1):
                for db in (-1, 0, 1):
                    x, y = a + da, b + db
                    if 0 <= x < N_U and 0 <= y < N_V and dense[s, x, y] and not seen[s, x, y]:
                        seen[s, x, y] = True
                        todo.append((x, y))
        us, vs = [p[0] for p in pixels], [p[1] for p in pixels]
        charge = sum(int(dense[s, a, b]) for a, b in pixels)
        out.append((s, len(pixels), charge, max(us) - min(us) + 1, max(vs) - min(vs) + 1))
    return sorted(out)


def clusters_of(event: SparseEvent) -> list[tuple[int, ...]]:
    c = find_clusters(event)
    return sorted(
        zip(
            *(x.tolist() for x in (c.sensor, c.size, c.charge, c.extent_u, c.extent_v)), strict=True
        )
    )


def test_clusters_equal_a_flood_fill_on_full_size_events() -> None:
    for event in load_model("synthetic").events([(3, 0), (3, 1)]):
        assert clusters_of(event) == flood_fill_clusters(event)
        # the labels are the clusters, numbered in the order of their first pixels
        labels = cluster_labels(event)
        found = find_clusters(event)
        assert np.array_equal(np.bincount(labels), found.size)
        assert np.array_equal(np.bincount(labels, weights=event.charge), found.charge)
        first = np.unique(labels, return_index=True)[1]
        assert (np.diff(first) > 0).all() and np.array_equal(event.sensor[first], found.sensor)


def test_clusters_stop_at_sensor_and_row_edges() -> None:
    # sensor 0's last row u=249 and sensor 1's first row; v=767 and v=0 of the next row
    event = SparseEvent(
        [0, 0, 0, 1, 2, 2],
        [248, 249, 249, 0, 10, 11],
        [767, 0, 767, 767, 767, 0],
        [1, 2, 3, 4, 5, 6],
    )
    assert clusters_of(event) == flood_fill_clusters(event)
    assert [c[1] for c in clusters_of(event)] == [1, 2, 1, 1, 1]
    assert clusters_of(SparseEvent.empty()) == []


def test_clusters_of_diagonals_checkerboards_and_a_whole_sensor() -> None:
    dense = np.zeros((N_SENSORS, N_U, N_V), dtype=np.uint8)
    u, v = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    dense[0, :20, :30][(u + v) % 2 == 0] = 7  # a checkerboard: joined by corners only
    dense[1, np.arange(50), np.arange(50) + 5] = 9  # a diagonal line
    dense[1, np.arange(50), 200 - np.arange(50)] = 9  # the other diagonal
    dense[1, 100:103, 0] = dense[1, 100:103, 767] = 3  # two columns at the edges of v
    dense[2] = 1  # every pixel of a sensor
    event = SparseEvent.from_dense(dense)
    found = clusters_of(event)
    assert found[:3] == [(0, 300, 2100, 20, 30), (1, 3, 9, 3, 1), (1, 3, 9, 3, 1)]
    assert found[3:5] == [(1, 50, 450, 50, 50), (1, 50, 450, 50, 50)]
    assert found[5:] == [(2, N_U * N_V, N_U * N_V, N_U, N_V)]
    dense[2] = 0  # (a flood fill in Python of 192,000 pixels takes a while)
    assert found[:5] == flood_fill_clusters(SparseEvent.from_dense(dense))


def per_event_hits(events: list[SparseEvent]) -> np.ndarray:
    return np.array([np.bincount(e.sensor, minlength=N_SENSORS) for e in events], dtype=np.float64)


def test_errors_and_correlations_are_those_of_the_events() -> None:
    gen = load_model("synthetic")
    events = gen.events([(1, i) for i in range(12)])
    # make sensors 0 and 1 move together: drop half of both in every other event
    for i in range(0, 12, 2):
        keep = (events[i].sensor > 1) | (np.arange(events[i].n_hits) % 2 == 0)
        e = events[i]
        events[i] = SparseEvent(e.sensor[keep], e.u[keep], e.v[keep], e.charge[keep])
    stats = PoolStatistics().add_events(events)
    h = per_event_hits(events) / PIXELS_PER_SENSOR
    want = np.corrcoef(h, rowvar=False)
    assert np.allclose(stats.correlation(), want, atol=1e-9)
    assert stats.correlation()[0, 1] > 0.9
    errors = h.std(axis=0, ddof=1) / math.sqrt(len(events))
    assert np.allclose(stats.occupancy_errors(), errors, rtol=1e-9)
    layer1 = h[:, :16].mean(axis=1)
    assert math.isclose(stats.occupancy_error(slice(0, 16)), layer1.std(ddof=1) / math.sqrt(12))
    # merging halves gives the whole, clusters included
    a = PoolStatistics(clusters=True).add_events(events[:5])
    b = PoolStatistics(clusters=True).add_events(events[5:])
    whole = PoolStatistics(clusters=True).add_events(events)
    assert a.merge(b) == whole
    with pytest.raises(TypeError, match="both count clusters"):
        PoolStatistics().merge(whole)


def test_distances_follow_their_definitions() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 400), rng.normal(0.3, 1.2, 400)
    ks, w1 = sample_distances(a, b)
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    assert ks == pytest.approx(np.abs(fa - fb).max())
    assert w1 == pytest.approx(np.abs(np.sort(a) - np.sort(b)).mean())  # equal sizes
    assert sample_distances(a, a) == (0.0, 0.0)
    assert sample_distances(a, np.zeros(0)) == (None, None)
    p = np.array([0.2, 0.3, 0.5])
    assert wasserstein_1(p, p) == 0.0
    assert wasserstein_1(np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), width=2.0) == 4.0


#: Events of each pool the module builds: enough for a 2 % occupancy shift to be 8 sigma.
EVENTS = 64


def derived_pool(
    source: Path, target: Path, model: str, change: Callable[[int, SparseEvent], SparseEvent]
) -> None:
    """A pool of ``source``'s events, each changed by ``change(position, event)``."""
    pool = create_or_open_pool(target, {"model": model, "physics_model": False}, None)
    pool.ensure_stream(1)
    position = 0
    for info, events in open_pool(source).blocks():
        changed = []
        for event in events:
            changed.append(change(position, event))
            position += 1
        pool.write_block(1, info.block, changed)
    pool.refresh_summary()


def with_hits_of(event: SparseEvent, donor: SparseEvent, rows: int) -> SparseEvent:
    """``event`` with the donor's hits in the first ``rows`` rows (u) of every sensor added
    where it has none: ``rows / 250`` more occupancy everywhere, of the same clusters and
    charges."""
    take = donor.u < rows
    extra = donor.pixel_index[take]
    new = ~np.isin(extra, event.pixel_index)
    index = np.concatenate([event.pixel_index, extra[new]])
    charge = np.concatenate([event.charge, donor.charge[take][new]])
    order = np.argsort(index, kind="stable")
    return SparseEvent.from_pixel_index(index[order], charge[order])


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three synthetic pools of other seeds; one with every other hit of the first removed;
    and one of the third's events with 2 % more hits (rows u < 5 of another seed's events)."""
    base = tmp_path_factory.mktemp("compare")
    out = {name: base / name for name in ("a", "b", "c", "half", "shifted")}
    for seed, name in enumerate("abc", 1):
        build_pool(out[name], model="synthetic", events=EVENTS, seed=seed, block_events=16)

    def thinned(position: int, e: SparseEvent) -> SparseEvent:
        return SparseEvent(e.sensor[::2], e.u[::2], e.v[::2], e.charge[::2])

    derived_pool(out["a"], out["half"], "thinned", thinned)
    donors = load_model("synthetic").events([(99, i) for i in range(EVENTS)])
    derived_pool(out["c"], out["shifted"], "shifted", lambda i, e: with_hits_of(e, donors[i], 5))
    return out


@pytest.fixture(scope="module")
def gathered(pools: dict[str, Path]) -> dict[str, PoolStatistics]:
    """The statistics (with clusters) of every event of each pool, gathered once."""
    return {name: gather(open_pool(pools[name]), None) for name in ("a", "b", "c", "shifted")}


def test_a_pool_against_itself_is_identical(pools: dict[str, Path]) -> None:
    report = compare_pools(pools["a"], pools["a"], sample=10)
    assert report["occupancy"]["overall"]["ratio"] == 1.0
    for name, d in report["distributions"].items():
        assert d["ks"] == 0.0 and d["wasserstein_1"] == 0.0, name
    assert report["correlation"]["max_abs_delta"] == 0.0
    json.dumps(report, allow_nan=False)


def test_two_samples_of_one_model_agree_within_errors(
    gathered: dict[str, PoolStatistics],
) -> None:
    report = compare_statistics(gathered["a"], gathered["b"])
    assert report["n_events"] == {"pool": EVENTS, "reference": EVENTS}
    for d in (report["occupancy"]["overall"], *report["occupancy"]["layers"]):
        assert abs(d["ratio"] - 1) < 4 * d["ratio_error"] + 1e-3
    assert report["distributions"]["charge"]["ks"] < 0.01
    c = report["correlation"]
    assert c["mean_abs_delta"] < 2 * c["mean_abs_delta_from_sampling"]


@pytest.mark.parametrize(("pool", "reference"), [("a", "b"), ("a", "c"), ("b", "c")])
def test_pools_of_one_generator_and_other_seeds_are_compatible(
    gathered: dict[str, PoolStatistics], pool: str, reference: str
) -> None:
    report = compare_statistics(gathered[pool], gathered[reference])
    assert list(report["tests"]) == list(QUANTITIES)
    for name, test in report["tests"].items():
        assert test["p_value"] is not None, name  # every quantity tested
        assert test["compatible"] and test["verdict"] == "compatible", (name, test)
    verdict = report["verdict"]
    assert verdict["compatible"] and verdict["quantities"] == len(QUANTITIES)
    assert verdict["verdict"].startswith("compatible: none of 12 quantities beyond 3.29 sigma")
    # the synthetic sensors are independent: the correlation pulls are noise
    correlation = report["tests"]["correlation"]
    assert correlation["pairs"] == N_SENSORS * (N_SENSORS - 1) // 2
    assert correlation["beyond_3_sigma"] <= 10  # 2.1 expected
    json.dumps(report, allow_nan=False)


def test_two_percent_more_occupancy_differs(gathered: dict[str, PoolStatistics]) -> None:
    report = compare_statistics(gathered["shifted"], gathered["a"])
    overall = report["occupancy"]["overall"]
    assert abs(overall["ratio"] - 1.02) < 3 * overall["ratio_error"]
    tests = report["tests"]
    for name in ("occupancy", "occupancy_layer_1", "occupancy_layer_2", "occupancy_per_sensor",
                 "hits_per_event", "clusters_per_event"):  # fmt: skip
        assert not tests[name]["compatible"], (name, tests[name])
        assert tests[name]["verdict"].startswith("differs at"), name
    assert tests["occupancy"]["sigma"] > 5
    # the added hits have the charges of the same generator: the spectrum does not move
    assert tests["charge"]["compatible"], tests["charge"]
    verdict = report["verdict"]
    assert verdict["compatible"] is False and "occupancy" in verdict["differing"]
    assert verdict["verdict"].startswith("differs: ")
    assert "occupancy, all sensors at" in verdict["verdict"]


def merged_starts(column: np.ndarray, need: float) -> list[int]:
    """Groups of adjacent bins, left to right, each closed once it holds ``need``."""
    starts, total = [0], 0.0
    for i, count in enumerate(column):
        if total >= need:
            starts.append(i)
            total = 0.0
        total += count
    return starts[:-1] if total < need and len(starts) > 1 else starts


def test_p_values_are_scipys_on_the_events(pools: dict[str, Path]) -> None:
    """Every p-value of a small comparison, recomputed from the events with scipy.stats
    (20 events a side: each group of events of the design effect is one event)."""
    events = {k: [e for _, b in open_pool(pools[k]).blocks() for e in b][:20] for k in "ab"}
    side = {k: PoolStatistics(clusters=True).add_events(v) for k, v in events.items()}
    report = compare_statistics(side["a"], side["b"])
    tests = report["tests"]
    hits = {k: np.array([e.n_hits for e in v]) for k, v in events.items()}
    assert tests["hits_per_event"]["p_value"] == pytest.approx(
        scipy_stats.ks_2samp(hits["a"], hits["b"], method="exact").pvalue
    )
    # occupancy: per-event fractions of fired pixels per sensor
    occ = {k: per_event_hits(v) / PIXELS_PER_SENSOR for k, v in events.items()}
    mean = {k: o.mean(axis=1) for k, o in occ.items()}
    z = (mean["a"].mean() - mean["b"].mean()) / math.sqrt(
        mean["a"].var(ddof=1) / 20 + mean["b"].var(ddof=1) / 20
    )
    assert tests["occupancy"]["p_value"] == pytest.approx(2 * scipy_stats.norm.sf(abs(z)))
    diff = occ["a"].mean(axis=0) - occ["b"].mean(axis=0)
    cov = (np.cov(occ["a"], rowvar=False) + np.cov(occ["b"], rowvar=False)) / 20
    rho = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    chi2, scale = float((diff**2 / np.diag(cov)).sum()), float((rho**2).sum() / N_SENSORS)
    per_sensor = tests["occupancy_per_sensor"]
    assert per_sensor["ndf"] == pytest.approx(N_SENSORS**2 / (rho**2).sum())
    assert per_sensor["p_value"] == pytest.approx(
        scipy_stats.chi2.sf(chi2 / scale, per_sensor["ndf"])
    )
    # pixel charge: per-event histograms; the design effect with the events as units
    per_event = {k: np.stack([np.bincount(e.charge, minlength=256) for e in v]) for k, v in events.items()}  # fmt: skip
    column = per_event["a"].sum(axis=0) + per_event["b"].sum(axis=0)
    na, nb = int(per_event["a"].sum()), int(per_event["b"].sum())
    starts = merged_starts(column, 5 * (na + nb) / min(na, nb))
    grouped = {k: np.add.reduceat(h, starts, axis=1) for k, h in per_event.items()}
    table = np.stack([grouped["a"].sum(axis=0), grouped["b"].sum(axis=0)])
    plain = scipy_stats.chi2_contingency(table, correction=False)
    variance = {}
    for k, h in grouped.items():
        n_e, total = h.sum(axis=1), h.sum()
        resid = h - n_e[:, None] * h.sum(axis=0) / total
        variance[k] = 20 / 19 * (resid**2).sum(axis=0) / total**2
    deff = na * nb / (na + nb) * ((variance["a"] + variance["b"]) / (table.sum(axis=0) / (na + nb))).sum() / plain.dof  # fmt: skip
    charge = tests["charge"]
    assert (charge["bins"], charge["ndf"]) == (len(starts), plain.dof)
    assert charge["chi2_uncorrected"] == pytest.approx(plain.statistic)
    assert charge["design_effect"] == pytest.approx(max(deff, 1.0))
    assert charge["p_value"] == pytest.approx(
        scipy_stats.chi2.sf(plain.statistic / max(deff, 1.0), plain.dof)
    )
    # correlations: Fisher's z of numpy's correlation coefficients
    r = {k: np.corrcoef(o, rowvar=False) for k, o in occ.items()}
    iu = np.triu_indices(N_SENSORS, 1)
    pulls = (np.arctanh(r["a"][iu]) - np.arctanh(r["b"][iu])) / math.sqrt(2 / 17)
    correlation = tests["correlation"]
    assert correlation["beyond_3_sigma"] == int((np.abs(pulls) > 3).sum())
    assert correlation["p_value"] == pytest.approx(
        scipy_stats.chi2.sf(float(pulls @ pulls), pulls.size), rel=1e-6
    )
    assert report["correlation"]["pull"][0][1] == pytest.approx(pulls[0])


def test_compare_needs_clusters_and_events(pools: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="clusters=True"):
        compare_statistics(PoolStatistics(), PoolStatistics(clusters=True))
    with pytest.raises(UsageError, match="sample must be an integer"):
        compare_pools(pools["a"], pools["b"], sample=-1)


def test_command_line_verdicts_table_json_and_plot(
    pools: dict[str, Path], tmp_path: Path, cli: Invoke
) -> None:
    r = cli("compare", str(pools["shifted"]), str(pools["a"]), "-q")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pool       ") and f"{EVENTS} of {EVENTS} events" in lines[0]
    header = lines[2].split()
    assert header[:2] == ["quantity", "pool"] and header[-3:] == ["test", "p-value", "verdict"]
    occupancy = next(line for line in lines if line.startswith("occupancy [%], all sensors"))
    assert "z = +" in occupancy and "differs at" in occupancy
    charge = next(line for line in lines if line.startswith("pixel charge [ADU]"))
    assert "chi2/ndf = " in charge and charge.endswith("compatible")
    overall = next(line for line in lines if line.startswith("all 12 quantities"))
    assert " differs (" in overall and overall.endswith(" of 12)")
    assert any(line.startswith("verdict    differs: ") for line in lines)
    sensors = [line for line in lines if line[:1].isdigit() and "." in line[:6]]
    assert len(sensors) == N_SENSORS and all(line.split()[-1][0] in "+-" for line in sensors)
    r = cli("compare", str(pools["b"]), str(pools["a"]), "--sample", "16", "--json", "-q",
            "--plot", str(tmp_path / "c.png"))  # fmt: skip
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["plot"] == str(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no probe or temporary file
    assert set(report["distributions"]) == set(DISTRIBUTIONS)
    assert list(report["tests"]) == list(QUANTITIES)
    assert report["verdict"]["compatible"] is True
    assert {t["verdict"] for t in report["tests"].values()} == {"compatible"}
    assert len(report["correlation"]["pool"]) == len(report["correlation"]["pull"]) == N_SENSORS


def no_reading(*args: object, **kwargs: object) -> None:
    raise AssertionError("the pools were read before the bad argument was said")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    ("plot", "said"),
    [
        pytest.param("/proc/x.png", "no file can be made in '/proc'", id="proc"),
        pytest.param("{tmp}/nowhere/x.png", "does not exist; create it first", id="no-dir"),
        pytest.param("{tmp}/x.jpg", "must end in .png, .pdf or .svg", id="suffix"),
    ],
)
def test_a_bad_plot_path_is_said_before_sampling(
    pools: dict[str, Path],
    tmp_path: Path,
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    plot: str,
    said: str,
) -> None:
    monkeypatch.setattr(Pool, "sample", no_reading)
    r = cli("compare", str(pools["a"]), str(pools["b"]), "--plot", plot.format(tmp=tmp_path))
    assert r.exit_code == 2  # a usage mistake
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("bgcache: error: --plot: ")
    assert said in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_scipy_is_said_before_reading(
    pools: dict[str, Path], cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n == "scipy" or n.startswith("scipy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setattr(Pool, "sample", no_reading)
    hint = r"pip install 'bgcache\[compare\]'"
    with pytest.raises(MissingDependencyError, match=hint):
        compare_pools(pools["a"], pools["b"])
    with pytest.raises(MissingDependencyError, match="finding clusters needs scipy"):
        find_clusters(SparseEvent([0], [0], [0], [9]))
    stats = PoolStatistics(clusters=True)
    with pytest.raises(MissingDependencyError):
        stats.add(SparseEvent([0], [0], [0], [9]))
    assert stats == PoolStatistics(clusters=True)  # nothing half counted
    r = cli("compare", str(pools["a"]), str(pools["b"]))
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "pip install 'bgcache[compare]'" in r.stderr


def test_inspect_stats_reports_errors_and_w1(pools: dict[str, Path], cli: Invoke) -> None:
    r = cli("inspect", str(pools["a"]), "--stats", "--sample", "10", "--json", "-q")
    assert r.exit_code == 0, r.stderr
    stats = json.loads(r.stdout)["statistics"]
    overall = stats["overall"]
    assert 0 < overall["occupancy_error"] < 0.01 * overall["occupancy"]
    assert overall["occupancy_ratio_error"] > 0
    assert stats["charge_spectrum"]["wasserstein_1"] > 0


def test_cluster_histograms_are_kept_by_groups_of_events_that_merge() -> None:
    events = load_model("synthetic").events([(5, i) for i in range(BATCHES + 3)])
    whole = ClusterStatistics()
    for e in events:
        whole.add(e)
    for name in ClusterStatistics.HISTOGRAMS:
        groups = whole.batches[name]
        assert np.array_equal(groups.sum(axis=0), getattr(whole, name))
        one = ClusterStatistics()
        one.add(events[1])
        assert np.array_equal(
            groups[1] - getattr(one, name), getattr(find_stats(events[1 + BATCHES]), name)
        )
    # merged halves are the whole, groups included: the second half's events follow the first's
    a, b = ClusterStatistics(), ClusterStatistics()
    for e in events[:7]:
        a.add(e)
    for e in events[7:]:
        b.add(e)
    assert a.merge(b) == whole


def find_stats(event: SparseEvent) -> ClusterStatistics:
    stats = ClusterStatistics()
    stats.add(event)
    return stats


def test_cluster_statistics_memory_does_not_grow() -> None:
    stats = ClusterStatistics()
    event = load_model("synthetic").events([(0, 0)])[0]
    stats.add(event)
    sizes = [h.nbytes for h in (stats.size, stats.charge, stats.extent_u, stats.extent_v)]
    for _ in range(3):
        stats.add(event)
    assert [h.nbytes for h in (stats.size, stats.charge, stats.extent_u, stats.extent_v)] == sizes
    assert stats.clusters_per_event.tolist() == [stats.clusters_per_event[0]] * 4
