"""Tests of bgcache.adapters.basf2 against a stand-in of basf2 (tests/basf2_standin).

basf2 cannot be installed here: ``tests/basf2_standin`` holds a few lines that act like
the basf2 / ROOT.Belle2 calls the adapter makes (NOT basf2). The ``standin`` fixture puts
that folder on ``sys.path`` for one test, so ``import basf2`` / ``import ROOT`` find it.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from bgcache import build_pool, open_pool
from bgcache.adapters import basf2 as adapter
from bgcache.errors import MissingDependencyError, PoolMismatchError, UsageError
from bgcache.overlay import PoolOverlay
from bgcache.seeding import seed_from_string

STANDIN = Path(__file__).parent / "basf2_standin"
Digits = list[tuple[int, int, int, int]]


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The basf2 and ROOT stand-ins, freshly imported and reset, for one test."""
    for name in ("basf2", "ROOT"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(STANDIN))
    import basf2
    import ROOT

    assert "NOT basf2" in (basf2.__doc__ or "") and "NOT basf2" in (ROOT.__doc__ or "")
    basf2.reset()
    ROOT.reset()
    yield SimpleNamespace(basf2=basf2, ROOT=ROOT)
    for name in ("basf2", "ROOT"):
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-event synthetic pool (numpy only: no torch)."""
    path = tmp_path_factory.mktemp("basf2") / "p"
    build_pool(path, model="synthetic", events=20, block_events=8)
    return path


def recorder(standin: SimpleNamespace, collection: str = "PXDDigits_beamBG") -> Any:
    """A stand-in module, placed after ours, that copies the collection at each event."""
    basf2, belle2 = standin.basf2, standin.ROOT.Belle2

    class Recorder(basf2.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.events: list[Digits] = []

        def event(self) -> None:
            array = belle2.PyStoreArray(collection, belle2.DataStore.c_Event)
            self.events.append(
                [
                    (d.getSensorID().getID(), d.getUCellID(), d.getVCellID(), d.getCharge())
                    for d in array
                ]
            )

    return Recorder()


def run(
    standin: SimpleNamespace,
    n_events: int,
    *,
    bg_overlay: bool = True,
    extension_name: str = "_beamBG",
    **params: Any,
) -> tuple[Any, Any]:
    """Process ``n_events`` on BGOverlayInput -> our module -> recorder; returns both."""
    basf2 = standin.basf2
    path = basf2.Path()
    if bg_overlay:
        path.add_module("BGOverlayInput", extensionName=extension_name)
    module = adapter.PXDBackgroundOverlayModule(**params)
    path.add_module(module)
    ext = params.get("extension") or extension_name
    rec = path.add_module(recorder(standin, "PXDDigits" + ext))
    basf2.process(path, n_events)
    return module, rec


def expected(pool: Path, n_events: int, **overlay_params: Any) -> list[Digits]:
    """The digits a separate PoolOverlay with the same parameters hands out."""
    with PoolOverlay(pool, **overlay_params) as overlay:
        out = []
        for _ in range(n_events):
            d = overlay.next_event().to_digits()
            out.append(
                list(
                    zip(
                        d["vxd_id"].tolist(),
                        d["u_cell"].tolist(),
                        d["v_cell"].tolist(),
                        d["charge"].tolist(),
                        strict=True,
                    )
                )
            )
        return out


# -- without basf2 ----------------------------------------------------------------------------
def test_import_without_basf2_raises_missing_dependency(
    monkeypatch: pytest.MonkeyPatch, pool: Path
) -> None:
    monkeypatch.setitem(sys.modules, "basf2", None)  # import basf2 -> ImportError
    with pytest.raises(MissingDependencyError, match="runs inside a Belle II basf2 installation"):
        adapter.import_basf2()
    with pytest.raises(MissingDependencyError, match="b2setup"):
        adapter.PXDBackgroundOverlayModule(pool)


def test_importing_the_adapter_imports_no_framework() -> None:
    code = (
        "import sys, bgcache.adapters, bgcache.adapters.basf2; "
        "print(sorted(m for m in ('basf2', 'ROOT', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- the module -------------------------------------------------------------------------------
def test_module_name_and_flags(standin: SimpleNamespace, pool: Path) -> None:
    module = adapter.PXDBackgroundOverlayModule(pool, seed=1, globaltag="gt", nintra=2)
    flags = standin.basf2.ModulePropFlags
    assert module.name() == "PXDBackgroundOverlay"
    assert module.has_properties(flags.PARALLELPROCESSINGCERTIFIED)
    assert module.has_properties(flags.TERMINATEINALLPROCESSES)
    assert (module.seed, module.globaltag, module.nintra, module.model) == (1, "gt", 2, None)


@pytest.mark.parametrize(
    ("bg_overlay", "extension_name", "extension", "collection"),
    [
        (True, "_beamBG", None, "PXDDigits_beamBG"),
        (True, "_custom", None, "PXDDigits_custom"),
        (False, "", "_mine", "PXDDigits_mine"),
    ],
    ids=["default-extension", "BackgroundInfo-extension", "extension-parameter"],
)
def test_registers_the_collection_with_event_durability(
    standin: SimpleNamespace,
    pool: Path,
    bg_overlay: bool,
    extension_name: str,
    extension: str | None,
    collection: str,
) -> None:
    module, _ = run(
        standin,
        0,
        bg_overlay=bg_overlay,
        extension_name=extension_name,
        pool=pool,
        extension=extension,
    )
    store = standin.ROOT.Belle2.DataStore
    assert (collection, store.c_Event, store.c_DontWriteOut) in standin.ROOT.REGISTRATIONS
    assert module.core.collection == collection


def test_digits_are_the_pool_events_in_draw_order(standin: SimpleNamespace, pool: Path) -> None:
    module, rec = run(standin, 3, pool=pool, seed=11, job=1, njobs=2)
    assert rec.events == expected(pool, 3, seed=11, job=1, njobs=2)
    # the last one is the pool's event at the key the overlay reports
    source, key = module.overlay.last
    assert source == "pool"
    event = open_pool(pool).event(open_pool(pool).position(*key)).to_digits()
    assert rec.events[-1][:5] == list(
        zip(*(event[c][:5].tolist() for c in ("vxd_id", "u_cell", "v_cell", "charge")), strict=True)
    )
    assert module.stats.from_pool == 3


def test_collection_is_cleared_each_event(standin: SimpleNamespace, pool: Path) -> None:
    """BGOverlayInput's digits (the stand-in puts 3 with charge 999) are replaced, and one
    event's digits do not pile up on the previous ones."""
    _, rec = run(standin, 2, pool=pool, seed=5)
    marker = standin.basf2.BGOverlayInputStandIn.MARKER_CHARGE
    want = expected(pool, 2, seed=5)
    assert [len(e) for e in rec.events] == [len(e) for e in want]
    assert all(charge != marker for event in rec.events for *_, charge in event)


def test_reuse_when_the_share_is_used_up(standin: SimpleNamespace, pool: Path) -> None:
    module, rec = run(standin, 3, pool=pool, seed=2, job=0, njobs=10, on_exhausted="reuse")
    assert rec.events == expected(pool, 3, seed=2, job=0, njobs=10, on_exhausted="reuse")
    assert (module.stats.from_pool, module.stats.reused) == (2, 1)


def test_seed_defaults_to_the_framework_seed(standin: SimpleNamespace, pool: Path) -> None:
    standin.basf2.set_random_seed(12345)
    module, rec = run(standin, 2, pool=pool)
    seed = seed_from_string("12345")
    assert module.core.seed == seed
    assert rec.events == expected(pool, 2, seed=seed)
    assert any(f"seed {seed} (derived" in m for m in standin.basf2.messages("INFO"))


def test_given_seed_is_used(standin: SimpleNamespace, pool: Path) -> None:
    module, rec = run(standin, 1, pool=pool, seed=-7)
    assert module.core.seed == -7
    assert rec.events == expected(pool, 1, seed=-7)


def test_terminate_closes_and_logs_the_counters(standin: SimpleNamespace, pool: Path) -> None:
    module, _ = run(standin, 2, pool=pool, seed=3)
    assert module.overlay._closed
    summary = module.stats.summary()
    assert summary.startswith("2 events: 2 from the pool")
    assert f"PXDBackgroundOverlay (share 0 of 1): {summary}" in standin.basf2.messages("INFO")


# -- errors at initialize ---------------------------------------------------------------------
def test_missing_background_info_is_a_clear_error(standin: SimpleNamespace, pool: Path) -> None:
    with pytest.raises(UsageError, match="add this module after BGOverlayInput"):
        run(standin, 1, bg_overlay=False, pool=pool)
    assert standin.ROOT.REGISTRATIONS == []  # nothing registered
    (error,) = standin.basf2.messages("ERROR")
    assert "inject_overlay" in error


def test_empty_extension_is_refused(standin: SimpleNamespace, pool: Path) -> None:
    with pytest.raises(UsageError, match="would overwrite the simulated PXDDigits"):
        run(standin, 1, extension_name="", pool=pool)


def test_model_must_match_the_pool(standin: SimpleNamespace, pool: Path) -> None:
    module = adapter.PXDBackgroundOverlayModule(pool, model="convnet")  # not checked yet
    path = standin.basf2.Path()
    path.add_module("BGOverlayInput")
    path.add_module(module)
    with pytest.raises(PoolMismatchError, match=r"model='convnet'.*holds synthetic events"):
        standin.basf2.process(path, 1)
    module, rec = run(standin, 1, pool=pool, model="synthetic", seed=1)
    assert rec.events == expected(pool, 1, seed=1)


def test_globaltag_without_checkpoint_warns(standin: SimpleNamespace, pool: Path) -> None:
    run(standin, 0, pool=pool, globaltag="PXDBackgroundGenerator")
    (warning,) = standin.basf2.messages("WARNING")
    assert "does not fetch conditions payloads" in warning


def test_missing_pool_is_reported_at_initialize(standin: SimpleNamespace, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run(standin, 1, pool=tmp_path / "nowhere")
    assert len(standin.basf2.messages("ERROR")) == 1


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"job": 2, "njobs": 2}, "job must be an integer in 0..1"),
        ({"on_exhausted": "wrap"}, "on_exhausted must be one of"),
        ({"seed": 2**63}, "out of range"),
        ({"prefetch": -1}, "prefetch"),
        ({"model": 3}, "model must be a string"),
    ],
    ids=["job", "on_exhausted", "seed", "prefetch", "model"],
)
def test_invalid_parameters_fail_at_once(
    standin: SimpleNamespace, pool: Path, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        adapter.PXDBackgroundOverlayModule(pool, **params)


# -- parallel processing ----------------------------------------------------------------------
def test_a_forked_worker_draws_its_sub_share(
    standin: SimpleNamespace, pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After initialize, basf2 -p 2 forks; worker 1 of job 1 of 2 draws share 3 of 4."""
    basf2 = standin.basf2
    path = basf2.Path()
    path.add_module("BGOverlayInput")
    module = path.add_module(adapter.PXDBackgroundOverlayModule(pool, seed=4, job=1, njobs=2))
    rec = path.add_module(recorder(standin))
    for m in path.modules():
        m.initialize()
    assert module.overlay._thread is None  # no prefetch thread when basf2 forks
    standin.ROOT.PROCESS.update(id=1, workers=2)
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)
    for _ in range(2):
        for m in path.modules():
            m.event()
    for m in path.modules():
        m.terminate()
    assert (module.core.job, module.core.njobs) == (3, 4)
    assert rec.events == expected(pool, 2, seed=4, job=3, njobs=4)
    assert any("worker 1 of 2 draws share 3 of 4" in m for m in basf2.messages("INFO"))


def test_process_share_keeps_jobs_disjoint() -> None:
    shares = {adapter.process_share(j, 3, w, 4) for j in range(3) for w in range(4)}
    assert shares == {(s, 12) for s in range(12)}
    with pytest.raises(UsageError, match="more than 65536"):
        adapter.process_share(0, 65536, 0, 2)


# -- inject_overlay ---------------------------------------------------------------------------
def fake_add_simulation(
    path: Any, components: list[str] | None = None, bkgfiles: Any = None
) -> str:
    """Like simulation.add_simulation: BGOverlayInput only with background files."""
    import basf2

    if bkgfiles:
        path.add_module(basf2.register_module("BGOverlayInput"))
    for name in ("FullSim", "PXDDigitizer", "BGOverlayExecutor"):
        path.add_module(name)
    return "done"


def test_inject_overlay_places_the_module_after_bg_overlay_input(
    standin: SimpleNamespace, pool: Path
) -> None:
    add_simulation = adapter.inject_overlay(fake_add_simulation, pool=pool, seed=1)
    assert add_simulation.__name__ == "fake_add_simulation"
    assert inspect.signature(add_simulation) == inspect.signature(fake_add_simulation)
    path = standin.basf2.Path()
    path.add_module("EventInfoSetter")
    assert add_simulation(path, bkgfiles=["bg.root"]) == "done"
    assert [m.name() for m in path.modules()] == [
        "EventInfoSetter",
        "BGOverlayInput",
        "PXDBackgroundOverlay",
        "FullSim",
        "PXDDigitizer",
        "BGOverlayExecutor",
    ]
    rec = path.add_module(recorder(standin))
    standin.basf2.process(path, 1)
    assert rec.events == expected(pool, 1, seed=1)


def test_inject_overlay_without_bg_overlay_input_is_an_error(
    standin: SimpleNamespace, pool: Path
) -> None:
    add_simulation = adapter.inject_overlay(fake_add_simulation, pool=pool)
    path = standin.basf2.Path()
    path.add_module("EventInfoSetter")
    with pytest.raises(UsageError, match=r"no BGOverlayInput module.*bkgfiles"):
        add_simulation(path)
    assert [m.name() for m in path.modules()] == ["EventInfoSetter"]  # nothing added


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"pool": "p", "on_exhaust": "reuse"}, "did you mean 'on_exhausted'"),
        ({"seed": 1}, "needs pool="),
    ],
    ids=["typo", "no-pool"],
)
def test_inject_overlay_checks_parameters_at_once(params: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        adapter.inject_overlay(fake_add_simulation, **params)


def test_standin_is_not_importable_as_basf2_by_default() -> None:
    assert str(STANDIN) not in sys.path
    assert not isinstance(sys.modules.get("basf2"), ModuleType)
