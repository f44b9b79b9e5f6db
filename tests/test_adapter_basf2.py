"""Tests of bgcache.adapters.basf2 on real PyROOT, with a stand-in of basf2 (tests/basf2_standin).

basf2 cannot be installed here, ROOT can (the ``root`` wheel of the test extra). The Belle II
classes the adapter touches are C++ replicas compiled by ROOT's cling
(``tests/basf2_standin/belle2_standin.h``): ``ROOT.Belle2.PXDDigit`` is a real class and the
digits collection a real ``TClonesArray``. Only basf2's own Python calls (Module, Path,
B2INFO...) are a few lines of Python (``tests/basf2_standin/basf2.py``, NOT basf2). The
``standin`` fixture puts that folder on ``sys.path`` for one test and stands for a basf2
release with ``PyStoreArray.fillArray`` or without it.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bgcache import build_pool, load_model, open_pool
from bgcache.adapters import _digits
from bgcache.adapters import basf2 as adapter
from bgcache.errors import EventError, MissingDependencyError, PoolMismatchError, UsageError
from bgcache.hits import SparseEvent, merge
from bgcache.overlay import PoolOverlay
from bgcache.seeding import seed_from_string
from bgcache.store.columns import PackedEvent
from bgcache.store.format import Layout, parse_codec
from bgcache.store.recompress import recompress_pool
from bgcache.store.writer import create_or_open_pool

STANDIN = Path(__file__).parent / "basf2_standin"


def _load_standin(monkeypatch: pytest.MonkeyPatch, fill_array: bool) -> SimpleNamespace:
    pytest.importorskip("ROOT", reason="needs ROOT: pip install root (bgcache's test extra)")
    monkeypatch.delitem(sys.modules, "basf2", raising=False)
    monkeypatch.syspath_prepend(str(STANDIN))
    import basf2
    import ROOT

    assert "NOT basf2" in (basf2.__doc__ or "")
    basf2.reset()
    basf2.use_fill_array(fill_array)
    return SimpleNamespace(basf2=basf2, ROOT=ROOT, belle2=ROOT.Belle2)


@pytest.fixture(autouse=True)
def _forget_standin() -> Iterator[None]:
    """No test leaves the stand-in importable as ``basf2``."""
    yield
    sys.modules.pop("basf2", None)


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """basf2 (stand-in) on real ROOT, as a release without ``PyStoreArray.fillArray``."""
    return _load_standin(monkeypatch, fill_array=False)


@pytest.fixture(params=["fillArray", "cling"])
def release(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A release with ``fillArray`` and the module told to take it, and one without it where
    the module takes its default (the cling filler: the replica is the basf2 layout)."""
    fill_array = request.param == "fillArray"
    return _load_standin(monkeypatch, fill_array=fill_array), request.param


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-event synthetic pool (numpy only: no torch), ~69,000 hits an event."""
    path = tmp_path_factory.mktemp("basf2") / "p"
    build_pool(path, model="synthetic", events=20, block_events=8)
    return path


@pytest.fixture(scope="module")
def lz4_pool(pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same events under blosc lz4 (a serving codec)."""
    path = tmp_path_factory.mktemp("basf2") / "p-lz4"
    recompress_pool(pool, path, codec="lz4")
    return path


def small_events() -> list[SparseEvent]:
    """Events of a few hundred hits (the per-hit path stays quick), empty ones, and one hit
    at each end of the detector's ranges (sensor 39, u 249, v 767, charge 255)."""
    full = load_model("synthetic").events([(6, i) for i in range(3)])
    corner = SparseEvent([0, 39], [0, 249], [0, 767], [1, 255])
    cut = [
        SparseEvent(e.sensor[::n], e.u[::n], e.v[::n], e.charge[::n])
        for e, n in zip(full, (90, 250, 170), strict=True)
    ]
    return [cut[0], SparseEvent.empty(), cut[1], SparseEvent.empty(), corner, cut[2]]


@pytest.fixture(scope="module", params=["zstd:1", "lz4:9"])
def small_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The :func:`small_events` as a pool (two blocks, one codec per parameter)."""
    path = tmp_path_factory.mktemp("basf2") / f"small-{request.param}"
    writer = create_or_open_pool(
        path,
        dict(load_model("synthetic").metadata()),
        Layout(4, compression=parse_codec(request.param)),
    )
    writer.ensure_stream(0)
    events = small_events()
    writer.write_block(0, 0, events[:4])
    writer.write_block(0, 1, events[4:])
    writer.refresh_summary()
    return path


def recorder(standin: SimpleNamespace, collection: str = "PXDDigits_beamBG") -> Any:
    """A module, placed after ours, that copies the collection (read in C++) at each event."""

    class Recorder(standin.basf2.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.events: list[np.ndarray] = []

        def event(self) -> None:
            self.events.append(standin.basf2.read_digits(collection))

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


def digits_of(event: SparseEvent) -> np.ndarray:
    d = event.to_digits()
    return np.stack([d[c].astype(np.uint16) for c in ("vxd_id", "u_cell", "v_cell", "charge")], 1)


def expected(pool: Path, n_events: int, **overlay_params: Any) -> list[np.ndarray]:
    """The digits a separate PoolOverlay with the same parameters hands out."""
    with PoolOverlay(pool, **overlay_params) as overlay:
        return [digits_of(overlay.next_event()) for _ in range(n_events)]


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (
            f"event {n}: {g.shape[0]} digits, the pool event has {w.shape[0]}"
        )
        assert np.array_equal(g, w), f"event {n} differs"


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


# -- the PXDDigit columns (no ROOT) -----------------------------------------------------------
def test_digit_columns_are_the_constructor_arguments_as_ushort() -> None:
    event = SparseEvent([0, 39], [0, 249], [0, 767], [1, 255])
    cols = _digits.pxd_digit_columns(event)
    assert list(cols) == list(_digits.DIGIT_COLUMNS)
    assert all(c.dtype == np.uint16 and c.flags.c_contiguous for c in cols.values())
    assert cols["sensorID"].tolist() == [8480, 19520]
    assert cols["uCellID"].tolist() == [0, 249] and cols["vCellID"].tolist() == [0, 767]
    assert _digits.pxd_digit_columns(SparseEvent.empty())["charge"].shape == (0,)


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        (([40], [0], [0], [5]), r"'sensor' holds 40\.\.40, a PXDDigit takes 0\.\.39"),
        (([0], [250], [0], [5]), r"'u' holds 250\.\.250"),
        (([0], [0], [768], [5]), r"'v' holds 768\.\.768"),
        (([0], [0], [0], [0]), r"'charge' holds 0\.\.0, a PXDDigit takes 1\.\.65535"),
        (([0], [0], [0], np.array([70000], np.uint32)), r"'charge' holds 70000\.\.70000"),
        (([0], [0], [-1], [5]), r"'v' holds -1\.\.-1"),
        (([0], [0], [0.5], [5]), "must hold integers"),
        (([0, 0], [0], [0, 1], [5, 5]), r"'u' has shape \(1,\), expected \(2,\)"),
    ],
    ids=["sensor", "u", "v", "charge-0", "charge-above-ushort", "negative", "float", "length"],
)
def test_digit_columns_refuse_what_would_wrap(columns: tuple[Any, ...], match: str) -> None:
    """Checked before conversion: astype(np.uint16) would wrap 70000 to 4464 silently."""
    event = SparseEvent(*(np.asarray(c) for c in columns), validate=False)
    with pytest.raises(EventError, match=match):
        _digits.pxd_digit_columns(event)


# -- fill paths on real TClonesArrays ----------------------------------------------------------
def make_array(standin: SimpleNamespace, name: str, marker_digits: int = 0) -> Any:
    """A registered PXDDigit array, holding ``marker_digits`` digits of charge 999."""
    belle2, store = standin.belle2, standin.belle2.DataStore
    array = belle2.PyStoreArray(belle2.PXDDigit.Class(), name, store.c_Event)
    assert array.registerInDataStore(name, store.c_DontWriteOut)
    if marker_digits:
        belle2.StandIn.putDigits(name, marker_digits, 999)
    return array


def fillers(standin: SimpleNamespace) -> dict[str, _digits.Filler]:
    """Every path, on a release with fillArray: the cling filler's two forms, fillArray and
    the per-hit loop."""
    standin.basf2.use_fill_array(True)
    stores = _digits.select_filler(standin.belle2, standin.ROOT)
    construct = _digits.compile_filler(standin.ROOT, member_stores=False)
    assert stores.path == "cling" and construct is not None
    return {
        "cling-stores": stores,
        "cling-construct": _digits.Filler("cling", "constructs", construct),
        "fillArray": _digits.select_filler(standin.belle2, standin.ROOT, "fillArray"),
        "python": _digits.select_filler(standin.belle2, standin.ROOT, "python"),
    }


def test_auto_stores_the_members_of_the_basf2_layout(release: Any, pool: Path) -> None:
    """The replica has the basf2 header's four unsigned short members: with or without
    fillArray, "auto" takes the cling filler's member stores, and logs why."""
    standin, _ = release
    module, _ = run(standin, 0, pool=pool, seed=1)
    assert module.core.filler.path == "cling"
    (info,) = [m for m in standin.basf2.messages("INFO") if "fills PXDDigits_beamBG by" in m]
    assert "by cling (the dictionary's Belle2::PXDDigit holds the four unsigned short" in info
    assert "storing the four members as TTree::GetEntry fills a split branch" in info
    assert standin.basf2.messages("WARNING") == []


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_every_digit_equals_the_pool_event(
    release: Any, pool: Path, lz4_pool: Path, codec: str
) -> None:
    """24 events over three blocks and the on-the-fly fallback past the share's end, from a
    pool of each codec: the TClonesArray holds exactly the pool event, hit for hit, and
    does not grow."""
    standin, path = release
    source = pool if codec == "zstd" else lz4_pool
    module, rec = run(standin, 24, pool=source, seed=11, job=0, njobs=1, fill=path)
    assert module.core.filler.path == path
    assert_same(rec.events, expected(pool, 24, seed=11, job=0, njobs=1))
    assert (module.stats.from_pool, module.stats.generated) == (20, 4)
    assert module.core.fill_stats.events == 24
    assert module.core.fill_stats.digits == sum(len(e) for e in rec.events)
    # the PyROOT view of the same array agrees with the C++ read
    array = standin.belle2.PyStoreArray("PXDDigits_beamBG")
    digit = array[len(array) - 1]
    assert type(digit).__name__ == "PXDDigit"
    last = rec.events[-1][-1].tolist()
    assert [digit.getSensorID().getID(), digit.getUCellID(), digit.getVCellID()] == last[:3]
    assert digit.getCharge() == last[3]


@pytest.mark.parametrize("fill", ["cling", "fillArray", "python"])
def test_every_path_fills_small_and_empty_events(
    monkeypatch: pytest.MonkeyPatch, small_pool: Path, fill: str
) -> None:
    """Each path, from a pool of each codec holding empty events and hits at both ends of
    every range, fills exactly the pool's events (drawn in the order the overlay draws)."""
    standin = _load_standin(monkeypatch, fill_array=True)
    module, rec = run(standin, 6, pool=small_pool, seed=3, on_exhausted="error", fill=fill)
    assert module.core.filler.path == fill
    want = expected(small_pool, 6, seed=3, on_exhausted="error")
    assert sorted(len(w) for w in want) == sorted(len(e) for e in small_events())
    assert_same(rec.events, want)


def test_collection_is_cleared_each_event(release: Any, pool: Path) -> None:
    """BGOverlayInput's digits (the stand-in puts 3 of charge 999) are replaced, and one
    event's digits do not pile up on the previous ones."""
    standin, path = release
    _, rec = run(standin, 3, pool=pool, seed=5, fill=path)
    marker = standin.basf2.BGOverlayInputStandIn.MARKER_CHARGE
    assert [len(e) for e in rec.events] == [len(e) for e in expected(pool, 3, seed=5)]
    assert all(not (event[:, 3] == marker).any() for event in rec.events)


def test_every_path_fills_both_event_forms(standin: Any, pool: Path) -> None:
    """A reader's buffers (PackedEvent) and hit columns (SparseEvent, what on-the-fly
    generation gives) fill the same digits on every path, into slots a bigger event left,
    and an event without hits empties the array (basf2's fillArray indexes each column's
    first element, so it is not called for one)."""
    reader = open_pool(pool)
    info = reader.block_list[0]
    packed = [*reader.read_window(info, 0, 2).events(), PackedEvent.from_event(SparseEvent.empty())]
    for name, filler in fillers(standin).items():
        array = make_array(standin, f"PXDDigits_{name}", marker_digits=80_000)
        for event in packed if name != "python" else packed[1:]:
            want = _digits.digit_table(event.unpack())
            for form in (event, event.unpack()):
                filler(array, form)
                assert np.array_equal(standin.basf2.read_digits(f"PXDDigits_{name}"), want), name
    if True:
        empty = _digits.pxd_digit_columns(SparseEvent.empty())
        with pytest.raises(IndexError):  # what the stand-in (and basf2) does with it
            make_array(standin, "PXDDigits_e").fillArray(**empty)


@pytest.mark.parametrize("fill", ["auto", "python"])
def test_charges_above_255_fill_exactly(release: Any, fill: str) -> None:
    """A merged event (signal + background) has 16-bit charges: every path stores them."""
    standin, _ = release
    array = make_array(standin, "PXDDigits_m")
    signal = SparseEvent([0, 39], [0, 249], [0, 767], np.array([250, 65_000], np.uint16))
    event = merge(signal, SparseEvent([0, 0, 39], [0, 0, 249], [0, 1, 767], [10, 4, 535]))
    assert event.charge.dtype == np.uint16 and event.charge.max() == 65_535
    _digits.select_filler(standin.belle2, standin.ROOT, fill)(array, event)
    assert np.array_equal(standin.basf2.read_digits("PXDDigits_m"), _digits.digit_table(event))


def _packed(delta: list[int], charge: list[int]) -> PackedEvent:
    return PackedEvent(np.array(delta, np.uint32), np.array(charge, np.uint8))


@pytest.mark.parametrize(
    ("event", "match"),
    [
        (_packed([7_680_000], [5]), r"'sensor' holds 40\.\.40, a PXDDigit takes 0\.\.39"),
        (_packed([5, 7_679_995], [5, 5]), r"'sensor' holds 0\.\.40"),
        (_packed([4_000_000_000, 294_967_297], [5, 5]), r"'sensor' holds 20833\.\.22369"),
        (_packed([5, 0, 3], [5, 5, 5]), "repeats a pixel at hit 1"),
        (_packed([5, 3], [5, 0]), r"'charge' holds 0\.\.5, a PXDDigit takes 1\.\.65535"),
        (SparseEvent([0], [250], [0], [5], validate=False), r"'u' holds 250\.\.250"),
        (
            SparseEvent([0], [0], [0], np.array([70_000], np.uint32), validate=False),
            r"'charge' holds 70000",
        ),
    ],
    ids=["beyond", "beyond-last", "wraps-uint32", "repeated", "charge-0", "u", "charge-wide"],
)
def test_a_bad_value_is_refused_and_nothing_filled(standin: Any, event: Any, match: str) -> None:
    """Every path refuses an event a PXDDigit cannot hold, naming the column and the range
    (no value narrowed or wrapped, also where a 32-bit running sum would wrap), and leaves
    no digit in the array (BGOverlayInput's included)."""
    for name, filler in fillers(standin).items():
        array = make_array(standin, f"PXDDigits_{name}", marker_digits=5)
        with pytest.raises(EventError, match=match):
            filler(array, event)
        assert len(array) == 0, name


def test_the_cling_filler_takes_hits_in_the_pool_order(standin: Any) -> None:
    """Its loop walks the pixel order (the deltas): hit columns out of it are refused."""
    event = SparseEvent([0, 0], [0, 0], [5, 4], [5, 5], validate=False)
    array = make_array(standin, "PXDDigits_o", marker_digits=5)
    with pytest.raises(EventError, match="unique and sorted by"):
        _digits.select_filler(standin.belle2, standin.ROOT)(array, event)
    assert len(array) == 0


def test_the_fill_releases_the_gil(standin: Any) -> None:
    """A Python thread runs while the cling filler fills a big event: the call releases the
    GIL (with it held, the thread could not run one bytecode until the call returned)."""
    import threading
    import time

    n = 2_500_000  # every third pixel
    event = PackedEvent(np.full(n, 3, np.uint32), np.ones(n, np.uint8))
    filler = _digits.select_filler(standin.belle2, standin.ROOT)
    array = make_array(standin, "PXDDigits_big")
    filler(array, event)  # slots made: the timed fill only stores
    stamps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    thread = threading.Thread(target=tick)
    try:
        thread.start()
        time.sleep(0.01)
        t0 = time.perf_counter()
        filler(array, event)
        t1 = time.perf_counter()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
    assert len(array) == n
    inside = [t for t in stamps if t0 + 0.003 < t < t1 - 0.001]
    assert t1 - t0 > 0.01, "the fill was too short to tell"
    assert len(inside) > 10, f"the thread ran {len(inside)} times during a {t1 - t0:.3f} s fill"


def test_the_first_event_is_checked_through_the_getters(standin: Any, pool: Path) -> None:
    """The member stores' check reads the array back through PXDDigit's getters: it passes
    on the event filled and names the first difference for another."""
    reader = open_pool(pool)
    first, second = reader.read_window(reader.block_list[0], 0, 2).events()
    filler = _digits.select_filler(standin.belle2, standin.ROOT)
    assert filler.verify is not None
    array = make_array(standin, "PXDDigits_v")
    filler(array, first)
    assert filler.verify(array, first) is None
    assert filler.verify(array, first.unpack()) is None
    problem = filler.verify(array, PackedEvent(first.index_delta, first.charge + np.uint8(1)))
    assert problem is not None and problem.startswith("digit 0 reads back through PXDDigit's")
    assert "the array holds" in (filler.verify(array, second) or "")


@pytest.mark.parametrize("fill_array", [True, False], ids=["fillArray", "no-fillArray"])
def test_a_failed_check_falls_back_and_refills(
    monkeypatch: pytest.MonkeyPatch, pool: Path, fill_array: bool
) -> None:
    """Where the first event does not read back as the pool event, the module warns, takes
    fillArray (or, without it, the cling filler constructing each digit) and fills that
    event again: every event still equals the pool's."""
    standin = _load_standin(monkeypatch, fill_array=fill_array)
    monkeypatch.setattr(_digits, "_verifier", lambda code: lambda array, event: "digit 0 differs")
    module, rec = run(standin, 3, pool=pool, seed=4)
    assert_same(rec.events, expected(pool, 3, seed=4))
    (warning,) = standin.basf2.messages("WARNING")
    assert (
        "the first event filled by cling does not read back as the pool event (digit 0" in warning
    )
    want = (
        "fillArray" if fill_array else "cling from now on (this basf2 release's PyStoreArray has no"
    )
    assert f"fills by {want}" in warning
    assert module.core.filler.verify is None


@pytest.mark.parametrize("fill_array", [True, False], ids=["fillArray", "no-fillArray"])
def test_without_cling_auto_takes_fill_array_or_the_loop(
    monkeypatch: pytest.MonkeyPatch, pool: Path, fill_array: bool
) -> None:
    """Where cling cannot compile the filler (no PXDDigit header for it), "auto" takes
    fillArray, else the per-hit loop, and says why."""
    standin = _load_standin(monkeypatch, fill_array=fill_array)
    monkeypatch.setattr(_digits, "compile_code", lambda root: None)
    filler = _digits.select_filler(standin.belle2, standin.ROOT)
    assert filler.path == ("fillArray" if fill_array else "python")
    assert filler.reason.startswith("cling could not compile the filler")
    with pytest.raises(UsageError, match="fill='cling' was asked for, but cling could not"):
        _digits.select_filler(standin.belle2, standin.ROOT, "cling")
    array = make_array(standin, "PXDDigits_nc")
    event = open_pool(pool).read_window(open_pool(pool).block_list[0], 0, 1).events()[0]
    if fill_array:  # the numpy columns feed fillArray
        filler(array, event)
        assert np.array_equal(
            standin.basf2.read_digits("PXDDigits_nc"), _digits.digit_table(event.unpack())
        )


VARIANT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import ROOT
header = open(sys.argv[1] + "/belle2_standin.h").read()
for old, new in json.loads(sys.argv[3]):
    assert old in header, old
    header = header.replace(old, new)
assert ROOT.gInterpreter.Declare(header)
import basf2
import numpy as np
from bgcache.adapters import basf2 as adapter, _digits
from bgcache.overlay import PoolOverlay
out = {}
for fill_array in (True, False):
    basf2.reset()
    basf2.use_fill_array(fill_array)
    path = basf2.Path()
    path.add_module("BGOverlayInput")
    module = path.add_module(adapter.PXDBackgroundOverlayModule(sys.argv[2], seed=2))
    got = []
    class Recorder(basf2.Module):
        def event(self):
            array = ROOT.Belle2.PyStoreArray("PXDDigits_beamBG")
            got.append([(d.getSensorID().getID(), d.getUCellID(), d.getVCellID(), d.getCharge()) for d in array])
    path.add_module(Recorder())
    basf2.process(path, 3)
    with PoolOverlay(sys.argv[2], seed=2) as overlay:
        want = [_digits.digit_table(overlay.next_event()).tolist() for _ in range(3)]
    out[str(fill_array)] = dict(
        path=module.core.filler.path, same=[list(map(list, g)) for g in got] == want,
        info=[m for m in basf2.messages("INFO") if "fills PXDDigits" in m],
        warnings=basf2.messages("WARNING"),
    )
print(json.dumps(out))
"""
#: Replicas of PXDDigit another release might have, as edits of belle2_standin.h.
VARIANTS = {
    # a member more (a release whose PXDDigit grew one): stores would leave it unset
    "extra-member": [
        ("unsigned short m_charge;\n", "unsigned short m_charge;\n    int m_frame = 0;\n")
    ],
    # members named as in the header but meaning the other coordinate (the constructor and
    # the getters agree with each other, not with the names): stores by name are wrong
    "swapped": [
        ("m_uCellID(uCellID), m_vCellID(vCellID)", "m_uCellID(vCellID), m_vCellID(uCellID)"),
        ("getUCellID() const { return m_uCellID; }", "getUCellID() const { return m_vCellID; }"),
        ("getVCellID() const { return m_vCellID; }", "getVCellID() const { return m_uCellID; }"),
    ],
}


def test_replicas_of_another_layout_take_the_next_path(tmp_path: Path) -> None:
    """On a PXDDigit with a member more, "auto" takes fillArray or, without it, the cling
    filler constructing each digit; on one whose members do not mean what their names say,
    the first event's check through the getters catches the stores and the module falls
    back. Each replica is compiled in a process of its own (a class is declared once)."""
    pytest.importorskip("ROOT", reason="needs ROOT: pip install root (bgcache's test extra)")
    pool = tmp_path / "small"
    writer = create_or_open_pool(pool, dict(load_model("synthetic").metadata()), Layout(8))
    writer.ensure_stream(0)
    writer.write_block(0, 0, small_events())
    writer.refresh_summary()
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", VARIANT, str(STANDIN), str(pool), json.dumps(edits)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, edits in VARIANTS.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results[name] = json.loads(out.strip().splitlines()[-1])
    extra, swapped = results["extra-member"], results["swapped"]
    for result in (extra, swapped):
        assert result["True"]["path"] == "fillArray" and result["False"]["path"] == "cling"
        assert all(r["same"] for r in result.values()), result
    assert (
        "(it has 5 data members); this basf2 release has PyStoreArray.fillArray"
        in extra["True"]["info"][0]
    )
    assert "constructing each PXDDigit(VxdID, u, v, charge)" in extra["False"]["info"][0]
    assert extra["True"]["warnings"] == extra["False"]["warnings"] == []
    for fill_array in ("True", "False"):
        assert "holds the four unsigned short members" in swapped[fill_array]["info"][0]
        (warning,) = swapped[fill_array]["warnings"]
        assert "does not read back as the pool event (digit 0 reads back through" in warning


def test_per_hit_fallback_fills_the_same_digits_and_warns(standin: Any, small_pool: Path) -> None:
    module, rec = run(standin, 1, pool=small_pool, seed=2, fill="python")
    assert module.core.filler.path == "python"
    assert_same(rec.events, expected(small_pool, 1, seed=2))
    warnings = standin.basf2.messages("WARNING")
    assert (
        "by python (fill='python' was asked for)" in warnings[0] and "~100x the time" in warnings[0]
    )
    if rec.events[0].shape[0]:
        assert "took" in warnings[1] and f"for {len(rec.events[0])} digits" in warnings[1]


def test_fill_array_asked_for_on_a_release_without_it(standin: Any, pool: Path) -> None:
    with pytest.raises(UsageError, match="PyStoreArray has no fillArray"):
        run(standin, 1, pool=pool, fill="fillArray")
    assert standin.basf2.registrations() == [
        ("BackgroundInfo", 1, 0),
        ("PXDDigits_beamBG", 0, 3),
    ]  # BGOverlayInput's; ours registered nothing
    (error,) = standin.basf2.messages("ERROR")
    assert "fill='auto'" in error


def test_cling_filler_refuses_an_array_of_another_class(standin: Any) -> None:
    belle2, store = standin.belle2, standin.belle2.DataStore
    other = belle2.PyStoreArray(belle2.BackgroundInfo.Class(), "Infos", store.c_Event)
    assert other.registerInDataStore("Infos", store.c_DontWriteOut)
    fill = _digits.compile_filler(standin.ROOT)
    assert fill is not None
    with pytest.raises(
        UsageError, match=r"cannot fill Infos: the array does not hold Belle2::PXDDigit"
    ):
        fill(other, SparseEvent([0], [1], [2], [3]))


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
    store = standin.belle2.DataStore
    assert (collection, store.c_Event, store.c_DontWriteOut) in standin.basf2.registrations()
    assert module.core.collection == collection


def test_digits_are_the_pool_events_in_draw_order(standin: SimpleNamespace, pool: Path) -> None:
    module, rec = run(standin, 3, pool=pool, seed=11, job=1, njobs=2)
    assert_same(rec.events, expected(pool, 3, seed=11, job=1, njobs=2))
    # the last one is the pool's event at the key the overlay reports
    source, key = module.overlay.last
    assert source == "pool"
    reader = open_pool(pool)
    assert np.array_equal(rec.events[-1], digits_of(reader.event(reader.position(*key))))
    assert module.stats.from_pool == 3


def test_reuse_when_the_share_is_used_up(standin: SimpleNamespace, pool: Path) -> None:
    module, rec = run(standin, 3, pool=pool, seed=2, job=0, njobs=10, on_exhausted="reuse")
    assert_same(rec.events, expected(pool, 3, seed=2, job=0, njobs=10, on_exhausted="reuse"))
    assert (module.stats.from_pool, module.stats.reused) == (2, 1)


def test_seed_defaults_to_the_framework_seed(standin: SimpleNamespace, pool: Path) -> None:
    standin.basf2.set_random_seed(12345)
    module, rec = run(standin, 2, pool=pool)
    seed = seed_from_string("12345")
    assert module.core.seed == seed
    assert_same(rec.events, expected(pool, 2, seed=seed))
    assert any(f"seed {seed} (derived" in m for m in standin.basf2.messages("INFO"))


def test_given_seed_is_used(standin: SimpleNamespace, pool: Path) -> None:
    module, rec = run(standin, 1, pool=pool, seed=-7)
    assert module.core.seed == -7
    assert_same(rec.events, expected(pool, 1, seed=-7))


def test_terminate_closes_and_logs_the_counters(standin: SimpleNamespace, pool: Path) -> None:
    module, _ = run(standin, 2, pool=pool, seed=3)
    assert module.overlay._closed
    summary = module.stats.summary()
    assert summary.startswith("2 events: 2 from the pool")
    (line,) = [m for m in standin.basf2.messages("INFO") if m.startswith("PXDBackgroundOverlay (")]
    assert line.startswith(f"PXDBackgroundOverlay (share 0 of 1): {summary}; filled 2 events (")
    assert "digits) by cling in" in line


# -- the SVD overlay's second BGOverlayInput ------------------------------------------------
def svd_overlay_path(standin: SimpleNamespace) -> Any:
    path = standin.basf2.Path()
    path.add_module("BGOverlayInput")
    path.add_module(
        "BGOverlayInput", bkgInfoName="BackgroundInfoSVDOverlay", extensionName="_SVDOverlay"
    )
    return path


def test_bkg_info_name_picks_the_background_info(standin: SimpleNamespace, pool: Path) -> None:
    path = svd_overlay_path(standin)
    module = path.add_module(
        adapter.PXDBackgroundOverlayModule(pool, seed=1, bkg_info_name="BackgroundInfoSVDOverlay")
    )
    svd, beam = recorder(standin, "PXDDigits_SVDOverlay"), recorder(standin)
    path.add_module(svd)
    path.add_module(beam)
    standin.basf2.process(path, 1)
    assert module.core.collection == "PXDDigits_SVDOverlay"
    assert_same(svd.events, expected(pool, 1, seed=1))
    assert beam.events[0][:, 3].tolist() == [999, 999, 999]  # the other one is untouched


def test_missing_background_info_is_a_clear_error(standin: SimpleNamespace, pool: Path) -> None:
    with pytest.raises(UsageError, match="add this module after BGOverlayInput"):
        run(standin, 1, bg_overlay=False, pool=pool)
    assert standin.basf2.registrations() == []  # nothing registered
    (error,) = standin.basf2.messages("ERROR")
    assert "inject_overlay" in error


def test_a_background_info_name_nobody_creates(standin: SimpleNamespace, pool: Path) -> None:
    with pytest.raises(UsageError, match=r"no BackgroundInfoX in the DataStore.*bkg_info_name"):
        run(standin, 1, pool=pool, bkg_info_name="BackgroundInfoX")


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
    standin.basf2.reset()
    module, rec = run(standin, 1, pool=pool, model="synthetic", seed=1)
    assert_same(rec.events, expected(pool, 1, seed=1))


def test_an_imported_pool_fills_its_digits(standin: SimpleNamespace, tmp_path: Path) -> None:
    """A pool made by ``bgcache import`` from a ROOT file (written by real ROOT) fills the
    collection with the file's digits; it cannot generate, so the default is refused."""
    pytest.importorskip("uproot", reason="bgcache import needs uproot")
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import root_files
    finally:
        sys.path.remove(str(Path(__file__).parent))
    from bgcache.importer import import_pool

    events = load_model("synthetic").events([(4, i) for i in range(3)])
    bg = root_files.write_overlay_file(
        tmp_path / "bg.root", [root_files.event_digits(e) for e in events]
    )
    import_pool(tmp_path / "imported", [bg])
    with pytest.raises(UsageError, match="no generator can make more of"):
        run(standin, 1, pool=tmp_path / "imported")
    standin.basf2.reset()
    module, rec = run(standin, 4, pool=tmp_path / "imported", seed=2, on_exhausted="reuse")
    want = expected(tmp_path / "imported", 4, seed=2, on_exhausted="reuse")
    assert_same(rec.events, want)
    assert (module.stats.from_pool, module.stats.reused) == (3, 1)
    assert {digits_of(e).tobytes() for e in events} == {w.tobytes() for w in want}


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
        ({"fill": "clang"}, r"fill must be one of auto, fillArray, cling, python.*'cling'"),
        ({"bkg_info_name": 1}, "bkg_info_name must be a string"),
    ],
    ids=["job", "on_exhausted", "seed", "prefetch", "model", "fill", "bkg_info_name"],
)
def test_invalid_parameters_fail_at_once(
    standin: SimpleNamespace, pool: Path, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        adapter.PXDBackgroundOverlayModule(pool, **params)


def test_empty_bkg_info_name_is_the_default_name() -> None:
    assert adapter.parse_params(pool="p", bkg_info_name="").bkg_info_name == "BackgroundInfo"


# -- parallel processing ----------------------------------------------------------------------
def test_forked_workers_fill_their_own_arrays(release: Any, pool: Path, tmp_path: Path) -> None:
    """basf2 -p 2 forks after initialize: each worker of job 1 of 2 draws its sub-share
    (share 2 and 3 of 4) into its own process's array, with the filler compiled before."""
    standin, path_name = release
    basf2 = standin.basf2
    path = basf2.Path()
    path.add_module("BGOverlayInput")
    module = path.add_module(
        adapter.PXDBackgroundOverlayModule(pool, seed=4, job=1, njobs=2, fill=path_name)
    )
    rec = path.add_module(recorder(standin))
    for m in path.modules():
        m.initialize()
    assert module.overlay._thread is None  # no prefetch thread when basf2 forks
    children = {}
    for worker in range(2):
        out = tmp_path / f"worker{worker}"
        pid = os.fork()
        if pid == 0:  # the worker: run 2 events, save what the array held, never return
            code = 1
            try:
                basf2.Belle2.ProcHandler.setStandIn(worker, 2)
                for _ in range(2):
                    for m in path.modules():
                        m.event()
                for m in path.modules():
                    m.terminate()
                np.savez(out.with_suffix(".npz"), *rec.events)
                out.with_suffix(".log").write_text("\n".join(basf2.messages("INFO")))
                code = 0
            except BaseException:
                out.with_suffix(".err").write_text(traceback.format_exc())
            finally:
                os._exit(code)
        children[worker] = pid
    for worker, pid in children.items():
        _, status = os.waitpid(pid, 0)
        err = tmp_path / f"worker{worker}.err"
        assert os.waitstatus_to_exitcode(status) == 0, err.read_text() if err.exists() else ""
        with np.load(tmp_path / f"worker{worker}.npz") as saved:
            got = [saved[f"arr_{i}"] for i in range(2)]
        assert_same(got, expected(pool, 2, seed=4, job=2 + worker, njobs=4))
        log = (tmp_path / f"worker{worker}.log").read_text()
        assert f"worker {worker} of 2 draws share {2 + worker} of 4" in log
        assert f"by {path_name} in" in log
    assert rec.events == []  # the parent drew nothing
    for m in path.modules():
        m.terminate()


def test_process_share_keeps_jobs_disjoint() -> None:
    shares = {adapter.process_share(j, 3, w, 4) for j in range(3) for w in range(4)}
    assert shares == {(s, 12) for s in range(12)}
    with pytest.raises(UsageError, match="more than 65536"):
        adapter.process_share(0, 65536, 0, 2)


# -- inject_overlay ---------------------------------------------------------------------------
def fake_add_simulation(
    path: Any, components: list[str] | None = None, bkgfiles: Any = None, svd: bool = False
) -> str:
    """Like simulation.add_simulation: BGOverlayInput only with background files (and a
    second one for the SVD overlay)."""
    import basf2

    if bkgfiles:
        path.add_module(basf2.register_module("BGOverlayInput"))
    if svd:
        path.add_module(
            "BGOverlayInput", bkgInfoName="BackgroundInfoSVDOverlay", extensionName="_SVDOverlay"
        )
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
    assert add_simulation(path, bkgfiles=["bg.root"], svd=True) == "done"
    assert [m.name() for m in path.modules()] == [
        "EventInfoSetter",
        "BGOverlayInput",
        "PXDBackgroundOverlay",
        "BGOverlayInput",
        "FullSim",
        "PXDDigitizer",
        "BGOverlayExecutor",
    ]
    rec = path.add_module(recorder(standin))
    standin.basf2.process(path, 1)
    assert_same(rec.events, expected(pool, 1, seed=1))


def test_inject_overlay_follows_bkg_info_name(standin: SimpleNamespace, pool: Path) -> None:
    add_simulation = adapter.inject_overlay(
        fake_add_simulation, pool=pool, bkg_info_name="BackgroundInfoSVDOverlay"
    )
    path = standin.basf2.Path()
    add_simulation(path, bkgfiles=["bg.root"], svd=True)
    names = [m.name() for m in path.modules()]
    assert names[:3] == ["BGOverlayInput", "BGOverlayInput", "PXDBackgroundOverlay"]
    add_simulation = adapter.inject_overlay(fake_add_simulation, pool=pool, bkg_info_name="BGX")
    path = standin.basf2.Path()
    with pytest.raises(UsageError, match=r"no BGOverlayInput with bkgInfoName='BGX'.*create "):
        add_simulation(path, bkgfiles=["bg.root"], svd=True)
    assert path.modules() == []


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
