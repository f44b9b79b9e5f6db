"""Putting a pool event into a basf2 ``TClonesArray`` of ``Belle2::PXDDigit``: one call per event.

Below :mod:`bgcache.adapters.basf2` (the module calls :func:`select_filler` at
``initialize`` and the filler at every event); above :mod:`bgcache.store.columns` (the
window buffers a reader decodes, :class:`~bgcache.store.columns.PackedEvent`) and
:mod:`bgcache.hits`. It owns the PXDDigit columns (:func:`pxd_digit_columns`: the
constructor's argument names, ``unsigned short`` each, bounds checked before anything is
converted), the C++ that fills digits from a pool's buffers, and the three ways of filling:

``cling``
    :data:`KERNEL_SOURCE` and :data:`FILLER_SOURCE`, compiled once per process by
    ``ROOT.gInterpreter.Declare`` (a forked basf2 worker inherits them). One C++ call per
    event takes the event's decoded buffers as the reader left them (delta-coded packed
    pixel indices, uint8 charges) and does everything per hit in one loop: the running sum,
    the detector row (sensor and u) and v, the VxdID and u by a table of the 10,000 rows,
    the range checks, and the member stores into the slots ``ExpandCreateFast`` keeps, the
    way ``TTree::GetEntry`` fills a split branch. That is taken where the dictionary's
    ``PXDDigit`` holds exactly the four ``unsigned short`` members of the basf2 header
    (checked at ``initialize``; the first event filled is read back through the class's
    getters and compared with the pool event); otherwise it constructs
    ``PXDDigit(VxdID, u, v, charge)`` in each slot (placement new).
``fillArray``
    basf2 releases that ship the ``PyStoreArray.fillArray`` pythonization
    (``framework/scripts/basf2/_constwrapper.py``): the same C++ loop writes the four
    ``unsigned short`` columns into buffers kept between events, which go to fillArray's
    C++ member template in one call. It appends, so the array is cleared first; it
    indexes the first element of each column, so an event without hits is not passed.
``python``
    a loop over hits (``appendNew()`` + ``__assign__`` of a new ``PXDDigit``, the only
    per-hit form that ROOT >= 6.32 accepts for a class without setters): only where cling
    cannot compile the filler and there is no fillArray, or when asked for; 2-3 us a hit on
    ROOT 6.40, 0.1-0.2 s per event, ~100x the bulk paths (docs/performance.md).

The C++ calls release the GIL (cppyy's ``__release_gil__``), so the overlay's prefetch and
decode threads run beside them: they touch no Python object, only the buffers and the
array (basf2 runs its modules on one thread; nothing else may call ROOT meanwhile).

Cling compiles the functions of a ``Declare`` with ``#pragma cling optimize`` only where
they are not ``inline`` (an inline function is emitted later, unoptimised: the fill loop
took 1.6x the time), so the functions here are plain definitions behind include guards.

Slot assignment (``clones[i] = PXDDigit(...)``, what Belle II's PXDBackgroundGenerator does)
is used by none of the paths: PyROOT refuses it since ROOT 6.32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bgcache.errors import EventError, UsageError
from bgcache.geometry import N_SENSORS, N_U, N_V, PIXELS_PER_SENSOR, SENSORS, VXD_IDS
from bgcache.hits import SparseEvent
from bgcache.store.columns import AnyEvent as Event
from bgcache.store.columns import PackedEvent

#: Fill paths a module can be asked for (``fill=...``); "auto" takes the fastest that is
#: correct on the release.
FILL_PATHS = ("auto", "fillArray", "cling", "python")
#: Names of the PXDDigit constructor's arguments, the keywords of ``fillArray``, in order.
DIGIT_COLUMNS = ("sensorID", "uCellID", "vCellID", "charge")
#: Largest charge a PXDDigit holds (``unsigned short m_charge``).
MAX_DIGIT_CHARGE = 0xFFFF
#: Pixels of the detector: no sound event has more hits.
_N_PIXELS = N_SENSORS * PIXELS_PER_SENSOR

#: What the C++ returns for a refused event (nothing is left in the array), besides
#: NOT_DIGITS (-1: the array does not hold Belle2::PXDDigit).
NOT_DIGITS, INDEX_REPEATS, INDEX_BEYOND, CHARGE_ZERO = -1, -2, -3, -4

#: The hit loop, independent of basf2: ``for_each_hit`` walks the packed event and hands
#: each hit's (VxdID, u, v, charge) to a sink; ``columns_u8``/``columns_u16`` write the
#: four ``unsigned short`` PXDDigit columns (the fillArray path). The running sum is kept
#: in 64 bits and checked against the detector's 7,680,000 pixels, a delta of 0 after an
#: event's first hit (a repeated pixel) and a charge of 0 are refused: the loop reads its
#: tables only inside their bounds whatever the buffer holds, and the caller discards what
#: the sink got when the result is negative. The row (sensor*250 + u) is one division by
#: the constant 768 (a multiply and a shift); VxdID and u come from a table of the rows.
KERNEL_SOURCE = r"""
#ifndef BGCACHE_HIT_KERNEL_V1
#define BGCACHE_HIT_KERNEL_V1
#pragma cling optimize(3)
#include <cstdint>
namespace bgcache_hits {
  const long c_index_repeats = -2, c_index_beyond = -3, c_charge_zero = -4;
  const unsigned c_rows = 40 * 250, c_row_pixels = 768;
  const std::uint64_t c_pixels = 40ull * 250 * 768;
  unsigned short g_row_vxd[c_rows];
  unsigned short g_row_u[c_rows];
  /** The table of the detector's rows, from the 40 sensors' packed VxdIDs in index order. */
  void set_sensor_ids(const unsigned short* vxd_ids)
  {
    for (unsigned row = 0; row < c_rows; ++row) {
      g_row_vxd[row] = vxd_ids[row / 250];
      g_row_u[row] = row % 250;
    }
  }
  template <class Charge, class Sink>
  long for_each_hit(long n, const unsigned* delta, const Charge* charge, Sink& sink)
  {
    std::uint64_t index = 0;
    unsigned repeats = 0, low = 0xFFFFFFFFu;
    for (long i = 0; i < n; ++i) {
      const unsigned step = delta[i];
      repeats |= (step == 0) & (i != 0);
      index += step;
      const unsigned pixel = index < c_pixels ? static_cast<unsigned>(index) : 0u;
      const unsigned row = pixel / c_row_pixels;
      const unsigned q = charge[i];
      low = q < low ? q : low;
      sink(i, g_row_vxd[row], g_row_u[row],
           static_cast<unsigned short>(pixel - row * c_row_pixels),
           static_cast<unsigned short>(q));
    }
    if (index >= c_pixels) return c_index_beyond;
    if (repeats) return c_index_repeats;
    if (n > 0 and low == 0) return c_charge_zero;
    return n;
  }
  template <class Charge>
  long columns(long n, const unsigned* delta, const Charge* charge, unsigned short* vxd,
               unsigned short* u, unsigned short* v, unsigned short* q)
  {
    auto sink = [=](long i, unsigned short a, unsigned short b, unsigned short c,
                    unsigned short d) { vxd[i] = a; u[i] = b; v[i] = c; q[i] = d; };
    return for_each_hit(n, delta, charge, sink);
  }
  long columns_u8(long n, const unsigned* delta, const unsigned char* charge,
                  unsigned short* vxd, unsigned short* u, unsigned short* v, unsigned short* q)
  {
    return columns(n, delta, charge, vxd, u, v, q);
  }
  long columns_u16(long n, const unsigned* delta, const unsigned short* charge,
                   unsigned short* vxd, unsigned short* u, unsigned short* v, unsigned short* q)
  {
    return columns(n, delta, charge, vxd, u, v, q);
  }
}
#endif
"""

#: The filler. ``fill_u8``/``fill_u16`` clear the array and put one digit per hit into it
#: from the event's buffers (``for_each_hit``), by member stores where the class holds
#: exactly the four ``unsigned short`` members of the basf2 header (``layout_problem()``
#: is empty; ``ExpandCreateFast`` then the stores at the offsets the class's dictionary
#: gives, as ``TTree::GetEntry`` fills a split TClonesArray branch) or by constructing
#: ``PXDDigit(VxdID, u, v, charge)`` in each slot (``construct``). Returns the number of
#: digits, NOT_DIGITS if the array does not hold Belle2::PXDDigit, or what ``for_each_hit``
#: refused (the array is then empty). ``read_digits`` reads an array back through the
#: class's getters (the check of the first event filled).
FILLER_SOURCE = r"""
#ifndef BGCACHE_PXD_DIGIT_FILLER_V3
#define BGCACHE_PXD_DIGIT_FILLER_V3
#pragma cling optimize(3)
#include <TClass.h>
#include <TClonesArray.h>
#include <TDataMember.h>
#include <TList.h>
#include <cstring>
#include <new>
#include <string>
#if __has_include(<pxd/dataobjects/PXDDigit.h>)
#include <pxd/dataobjects/PXDDigit.h>
#endif
namespace bgcache_basf2 {
  struct DigitLayout {
    long sensor = -1, u = -1, v = -1, charge = -1;
    std::string problem;
  };
  DigitLayout find_layout()
  {
    DigitLayout layout;
    TClass* cls = Belle2::PXDDigit::Class();
    int members = 0;
    for (TObject* item : *cls->GetListOfDataMembers()) {
      if (not (static_cast<TDataMember*>(item)->Property() & kIsStatic)) ++members;
    }
    auto offset = [&](const char* name) -> long {
      TDataMember* member = cls->GetDataMember(name);
      if (member == nullptr) {
        if (layout.problem.empty()) layout.problem = std::string("it has no ") + name;
        return -1;
      }
      if (member->GetArrayDim() != 0 or std::strcmp(member->GetTypeName(), "unsigned short")) {
        if (layout.problem.empty())
          layout.problem = std::string(name) + " is " + member->GetTypeName();
        return -1;
      }
      return cls->GetDataMemberOffset(name);
    };
    layout.sensor = offset("m_sensorID");
    layout.u = offset("m_uCellID");
    layout.v = offset("m_vCellID");
    layout.charge = offset("m_charge");
    if (layout.problem.empty() and members != 4)
      layout.problem = "it has " + std::to_string(members) + " data members";
    return layout;
  }
  const DigitLayout& digit_layout()
  {
    static const DigitLayout layout = find_layout();
    return layout;
  }
  /** Empty where member stores fill the class; else what differs from the basf2 header. */
  std::string layout_problem() { return digit_layout().problem; }
  template <class Charge>
  long fill(TClonesArray* array, long n, const unsigned* delta, const Charge* charge,
            bool construct)
  {
    if (array == nullptr or array->GetClass() != Belle2::PXDDigit::Class()) return -1;
    const DigitLayout& layout = digit_layout();
    array->Clear();
    long status;
    if (construct or not layout.problem.empty()) {
      if (n > array->Capacity()) array->Expand(n);
      auto sink = [array](long i, unsigned short vxd, unsigned short u, unsigned short v,
                          unsigned short q) {
        new ((*array)[i]) Belle2::PXDDigit(Belle2::VxdID(vxd), u, v, q);
      };
      status = bgcache_hits::for_each_hit(n, delta, charge, sink);
    } else {
      array->ExpandCreateFast(n);
      char** slots = reinterpret_cast<char**>(array->GetObjectRef());
      const long so = layout.sensor, uo = layout.u, vo = layout.v, qo = layout.charge;
      auto sink = [=](long i, unsigned short vxd, unsigned short u, unsigned short v,
                      unsigned short q) {
        char* digit = slots[i];
        std::memcpy(digit + so, &vxd, sizeof vxd);
        std::memcpy(digit + uo, &u, sizeof u);
        std::memcpy(digit + vo, &v, sizeof v);
        std::memcpy(digit + qo, &q, sizeof q);
      };
      status = bgcache_hits::for_each_hit(n, delta, charge, sink);
    }
    if (status < 0) {
      array->Clear();
      return status;
    }
    return array->GetEntriesFast();
  }
  long fill_u8(TClonesArray* array, long n, const unsigned* delta, const unsigned char* charge,
               bool construct)
  {
    return fill(array, n, delta, charge, construct);
  }
  long fill_u16(TClonesArray* array, long n, const unsigned* delta,
                const unsigned short* charge, bool construct)
  {
    return fill(array, n, delta, charge, construct);
  }
  /** The digits through PXDDigit's getters into out[4 * i + 0..3] (VxdID, u, v, charge). */
  long read_digits(TClonesArray* array, unsigned short* out, long capacity)
  {
    if (array == nullptr or array->GetClass() != Belle2::PXDDigit::Class()) return -1;
    const long n = array->GetEntriesFast();
    for (long i = 0; i < n and i < capacity; ++i) {
      const Belle2::PXDDigit* digit = static_cast<const Belle2::PXDDigit*>(array->At(i));
      out[4 * i] = digit->getSensorID().getID();
      out[4 * i + 1] = digit->getUCellID();
      out[4 * i + 2] = digit->getVCellID();
      out[4 * i + 3] = digit->getCharge();
    }
    return n;
  }
}
#endif
"""

Columns = dict[str, np.ndarray]
#: ``fill(store_array, event)``: replaces the array's content with the event's digits.
FillFunction = Callable[[Any, Event], None]
#: ``verify(store_array, event)``: None if the array holds the event, else what differs.
VerifyFunction = Callable[[Any, Event], "str | None"]


def checked_hits(event: SparseEvent) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The event's columns ``sensor, u, v, charge``, checked for what a PXDDigit can hold.

    Each column must be integer, and sensor index < 40, u < 250, v < 768, charge in
    1..65535 (``unsigned short``): checked before any conversion, so no value wraps.

    Raises:
        EventError: a column of another length, not integer, or a value out of range
            (names the column and the range found).
    """
    columns = tuple(np.asarray(c) for c in (event.sensor, event.u, event.v, event.charge))
    n = columns[3].shape[0]
    for name, col, low, high in zip(
        ("sensor", "u", "v", "charge"),
        columns,
        (0, 0, 0, 1),
        (N_SENSORS - 1, N_U - 1, N_V - 1, MAX_DIGIT_CHARGE),
        strict=True,
    ):
        if col.ndim != 1 or col.shape[0] != n:
            raise EventError(f"hit column {name!r} has shape {col.shape}, expected ({n},)")
        if n == 0:
            continue
        if not np.issubdtype(col.dtype, np.integer):
            raise EventError(f"hit column {name!r} must hold integers, got {col.dtype}")
        lo, hi = int(col.min()), int(col.max())
        if lo < low or hi > high:
            raise EventError(_out_of_range(name, lo, hi, low, high))
    return columns  # type: ignore[return-value]


def _out_of_range(name: str, lo: int, hi: int, low: int, high: int) -> str:
    return (
        f"hit column {name!r} holds {lo}..{hi}, a PXDDigit takes {low}..{high}: "
        "the event cannot be stored as PXDDigits"
    )


def pxd_digit_columns(event: Event) -> Columns:
    """The event's hits as PXDDigit constructor columns, contiguous ``uint16`` each.

    Raises:
        EventError: see :func:`checked_hits` (run first: no value wraps in the conversion).

    Example:
        >>> cols = pxd_digit_columns(SparseEvent([39], [2], [5], [300]))
        >>> {k: v.tolist() for k, v in cols.items()}
        {'sensorID': [19520], 'uCellID': [2], 'vCellID': [5], 'charge': [300]}
    """
    if isinstance(event, PackedEvent):
        delta, charge = packed_buffers(event)
        status = _status(delta, charge)
        if status < 0:
            raise refusal(status, delta, charge)
        event = event.unpack()  # sound now: the uint32 running sum cannot wrap
    sensor, u, v, charge = checked_hits(event)
    return {
        "sensorID": VXD_IDS.take(sensor),  # a new contiguous array; faster than VXD_IDS[sensor]
        "uCellID": np.ascontiguousarray(u, dtype=np.uint16),
        "vCellID": np.ascontiguousarray(v, dtype=np.uint16),
        "charge": np.ascontiguousarray(charge, dtype=np.uint16),
    }


def packed_buffers(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """The buffers the C++ loop takes: uint32 index deltas, and uint8 or uint16 charges.

    A :class:`PackedEvent` hands over its own (no copy). Hit columns are checked first
    (:func:`checked_hits`, then the sort order the deltas need) and packed: the path of
    events that do not come from a pool (on-the-fly generation, merged events).

    Raises:
        EventError: a column out of range, hits not unique and sorted, or more hits than
            the detector has pixels.
    """
    if isinstance(event, PackedEvent):
        delta, charge = event.index_delta, event.charge
    else:
        sensor, u, v, charge = checked_hits(event)
        index = (
            sensor.astype(np.uint32) * np.uint32(PIXELS_PER_SENSOR)
            + u.astype(np.uint32) * np.uint32(N_V)
            + v.astype(np.uint32)
        )
        if index.shape[0] > 1 and not bool(np.all(index[1:] > index[:-1])):
            raise EventError(
                "hits must be unique and sorted by (sensor, u, v) to be filled as PXDDigits; "
                "use bgcache.hits.sorted_event()"
            )
        delta = np.empty_like(index)
        if index.shape[0]:
            delta[0] = index[0]
            np.subtract(index[1:], index[:-1], out=delta[1:])
        charge = charge.astype(np.uint8 if charge.dtype == np.uint8 else np.uint16, copy=False)
    if delta.dtype != np.uint32 or charge.dtype not in (np.uint8, np.uint16):
        raise EventError(
            f"packed event buffers are {delta.dtype} and {charge.dtype}, expected uint32 "
            "index deltas and uint8 or uint16 charges"
        )
    if delta.shape != charge.shape or delta.ndim != 1:
        raise EventError(
            f"packed event buffers of {delta.shape} index deltas and {charge.shape} charges"
        )
    if delta.shape[0] > _N_PIXELS:
        raise EventError(
            f"an event of {delta.shape[0]:,} hits: the detector has {_N_PIXELS:,} pixels"
        )
    return np.ascontiguousarray(delta), np.ascontiguousarray(charge)


def _status(delta: np.ndarray, charge: np.ndarray) -> int:
    """What the C++ loop would say of a packed event, in numpy (the paths without cling)."""
    n = int(delta.shape[0])
    if n and int(delta.sum(dtype=np.uint64)) >= _N_PIXELS:
        return INDEX_BEYOND
    if n > 1 and not bool(delta[1:].all()):
        return INDEX_REPEATS
    if n and int(charge.min()) == 0:
        return CHARGE_ZERO
    return n


def refusal(status: int, delta: np.ndarray, charge: np.ndarray) -> EventError:
    """The EventError of an event the C++ loop refused (``status`` < -1), naming the column
    and the range it holds (worked out again here, on the error path only)."""
    if status == INDEX_BEYOND:
        sensor = np.cumsum(delta, dtype=np.uint64) // np.uint64(PIXELS_PER_SENSOR)
        return EventError(_out_of_range("sensor", int(sensor.min()), int(sensor.max()), 0, 39))
    if status == INDEX_REPEATS:
        at = int(np.flatnonzero(delta[1:] == 0)[0]) + 1
        return EventError(
            f"hit column 'index' repeats a pixel at hit {at} (delta 0): an event's pixels are "
            "unique and sorted, the event cannot be stored as PXDDigits"
        )
    if status == CHARGE_ZERO:
        return EventError(
            _out_of_range("charge", int(charge.min()), int(charge.max()), 1, MAX_DIGIT_CHARGE)
        )
    return EventError(f"the hit loop refused the event (status {status})")


@dataclass(frozen=True)
class Filler:
    """One way of filling the digits array; ``fill(store_array, event)`` replaces its content.

    Attributes:
        path: ``"cling"``, ``"fillArray"`` or ``"python"``.
        reason: why this path was chosen (logged at ``initialize``).
        fill: the function.
        verify: reads the array back through ``PXDDigit``'s getters and compares it with
            the event (None where the path constructs digits with basf2's own code).
        fallback: the filler to take instead when ``verify`` finds a difference.
    """

    path: str
    reason: str
    fill: FillFunction
    verify: VerifyFunction | None = None
    fallback: Callable[[], Filler] | None = field(default=None, repr=False)

    def __call__(self, store_array: Any, event: Event) -> None:
        self.fill(store_array, event)


#: PyROOT passes a numpy array as the pointer to its data; an empty array has none.
_NO_HITS = (np.zeros(1, np.uint32), np.zeros(1, np.uint8))


@dataclass
class _Cling:
    """What cling compiled in this process: the hit loop, and the filler (None where the
    release's PXDDigit does not compile against it)."""

    kernel: Any
    digits: Any | None
    layout_problem: str | None  # None where the filler did not compile


#: Processes (pid -> (ROOT module, what was compiled)) in which the sources were declared.
_compiled: dict[int, tuple[Any, _Cling | None]] = {}


def compile_code(root: Any) -> _Cling | None:
    """The C++ of this module, declared once per process; None if cling cannot compile even
    the hit loop. The functions release the GIL when called."""
    pid = os.getpid()
    cached = _compiled.get(pid)
    if cached is not None and cached[0] is root:
        return cached[1]
    result: _Cling | None = None
    if root.gInterpreter.Declare(KERNEL_SOURCE):
        kernel = root.bgcache_hits
        kernel.set_sensor_ids(np.ascontiguousarray(VXD_IDS, dtype=np.uint16))
        for name in ("columns_u8", "columns_u16"):
            getattr(kernel, name).__release_gil__ = True
        digits, problem = None, None
        if root.gInterpreter.Declare(FILLER_SOURCE):
            digits = root.bgcache_basf2
            for name in ("fill_u8", "fill_u16", "read_digits"):
                getattr(digits, name).__release_gil__ = True
            problem = str(digits.layout_problem())
        result = _Cling(kernel, digits, problem)
    _compiled[pid] = (root, result)
    return result


def _cling_filler(code: _Cling, construct: bool) -> FillFunction:
    digits = code.digits
    assert digits is not None

    def fill(store_array: Any, event: Event) -> None:
        try:
            delta, charge = packed_buffers(event)
        except EventError:
            store_array.getPtr().Clear()  # a refused event leaves no digits, as on every path
            raise
        n = int(delta.shape[0])
        if not n:
            function, args = digits.fill_u8, _NO_HITS
        else:
            function = digits.fill_u8 if charge.dtype == np.uint8 else digits.fill_u16
            args = (delta, charge)
        status = int(function(store_array.getPtr(), n, *args, construct))
        if status == n:
            return
        if status == NOT_DIGITS:
            raise UsageError(
                f"the cling filler cannot fill {store_array.getName()}: the array does not "
                "hold Belle2::PXDDigit"
            )
        raise refusal(status, delta, charge)

    return fill


def _verifier(code: _Cling) -> VerifyFunction:
    digits = code.digits
    assert digits is not None

    def verify(store_array: Any, event: Event) -> str | None:
        want = digit_table(event.unpack() if isinstance(event, PackedEvent) else event)
        n = want.shape[0]
        got = np.zeros((max(n, 1), 4), np.uint16)
        held = int(digits.read_digits(store_array.getPtr(), got.reshape(-1), n))
        if held != n:
            return f"the array holds {held} digits, the event {n}"
        bad = np.flatnonzero((got[:n] != want).any(axis=1))
        if bad.size:
            i = int(bad[0])
            return (
                f"digit {i} reads back through PXDDigit's getters as (VxdID, u, v, charge) = "
                f"{tuple(got[i].tolist())}, the pool event has {tuple(want[i].tolist())}"
            )
        return None

    return verify


def digit_table(event: SparseEvent) -> np.ndarray:
    """The event's digits as an (n, 4) uint16 table: VxdID, u, v, charge (a check's view)."""
    d = event.to_digits()
    return np.stack([d[c].astype(np.uint16) for c in ("vxd_id", "u_cell", "v_cell", "charge")], 1)


class _ColumnBuffers:
    """The four uint16 columns of the fillArray path, kept between events (grown as needed)."""

    def __init__(self) -> None:
        self._buffers = tuple(np.zeros(0, np.uint16) for _ in DIGIT_COLUMNS)

    def get(self, n: int) -> tuple[np.ndarray, ...]:
        if self._buffers[0].shape[0] < n:
            self._buffers = tuple(np.empty(n + n // 8, np.uint16) for _ in DIGIT_COLUMNS)
        return tuple(b[:n] for b in self._buffers)


def _fill_array_filler(code: _Cling | None) -> FillFunction:
    buffers = _ColumnBuffers()

    def columns(event: Event) -> Columns:
        if code is None:
            return pxd_digit_columns(event)
        delta, charge = packed_buffers(event)
        n = int(delta.shape[0])
        out = buffers.get(n)
        function = code.kernel.columns_u8 if charge.dtype == np.uint8 else code.kernel.columns_u16
        status = int(function(n, delta, charge, *out)) if n else 0
        if status != n:
            raise refusal(status, delta, charge)
        return dict(zip(DIGIT_COLUMNS, out, strict=True))

    def fill(store_array: Any, event: Event) -> None:
        try:
            cols = columns(event)
        except EventError:
            store_array.getPtr().Clear()  # a refused event leaves no digits, as on every path
            raise
        store_array.getPtr().Clear()  # fillArray appends
        if cols["charge"].shape[0]:  # it reads column[0]: an empty column is an IndexError
            store_array.fillArray(**cols)

    return fill


def _per_hit_filler(belle2: Any) -> FillFunction:
    make_digit = belle2.PXDDigit
    vxd_ids = {s.vxd_id: belle2.VxdID(s.vxd_id) for s in SENSORS}

    def fill(store_array: Any, event: Event) -> None:
        try:
            columns = pxd_digit_columns(event)
        except EventError:
            store_array.getPtr().Clear()
            raise
        store_array.getPtr().Clear()
        append = store_array.appendNew
        for sensor, u, v, charge in zip(*(columns[k].tolist() for k in DIGIT_COLUMNS), strict=True):
            append().__assign__(make_digit(vxd_ids[sensor], u, v, charge))

    return fill


def compile_filler(root: Any, member_stores: bool | None = None) -> FillFunction | None:
    """The cling filler, declared once per process; None if cling cannot compile it.

    Args:
        root: the ROOT module.
        member_stores: store the members as ``TTree::GetEntry`` does (None: where the
            class's layout allows it, see :data:`FILLER_SOURCE`); False constructs each
            digit.
    """
    code = compile_code(root)
    if code is None or code.digits is None:
        return None
    return _cling_filler(code, construct=member_stores is False)


_STORES = "storing the four members as TTree::GetEntry fills a split branch"
_CONSTRUCTS = "constructing each PXDDigit(VxdID, u, v, charge)"


def select_filler(belle2: Any, root: Any, requested: str = "auto") -> Filler:
    """The fill path for this basf2 release: ``requested``, or with "auto" the fastest that
    is correct here (:class:`Filler.reason` says why):

    1. ``cling`` storing the members, where the dictionary's ``PXDDigit`` holds the four
       ``unsigned short`` members of the basf2 header (its first event is read back through
       the getters: :attr:`Filler.verify`, with :attr:`Filler.fallback` the next of these);
    2. ``fillArray``, where ``PyStoreArray`` has it;
    3. ``cling`` constructing each ``PXDDigit``;
    4. ``python``, the per-hit loop.

    Raises:
        UsageError: an unknown path, or a requested one this release cannot take.
    """
    if requested not in FILL_PATHS:
        raise UsageError(f"fill must be one of {', '.join(FILL_PATHS)}, got {requested!r}")
    has_fill_array = callable(getattr(belle2.PyStoreArray, "fillArray", None))
    if requested == "python":
        return Filler("python", "fill='python' was asked for", _per_hit_filler(belle2))
    code = compile_code(root)
    compiled = code is not None and code.digits is not None
    if requested == "fillArray":
        if not has_fill_array:
            raise UsageError(
                "fill='fillArray' was asked for, but this basf2 release's PyStoreArray has no "
                "fillArray (a newer release has it): use fill='auto'"
            )
        return Filler("fillArray", "fill='fillArray' was asked for", _fill_array_filler(code))
    if code is not None and code.digits is not None:
        stores = not code.layout_problem
        why_not = (
            ""
            if stores
            else "the dictionary's Belle2::PXDDigit is not the four unsigned short members "
            f"of the basf2 header ({code.layout_problem})"
        )
    else:
        stores = False
        why_not = (
            "cling could not compile the filler against this release's Belle2::PXDDigit "
            "(see the interpreter's messages above)"
        )

    def constructs(reason: str) -> Filler:
        assert code is not None
        return Filler(
            "cling",
            f"{reason}; a filler compiled by cling, {_CONSTRUCTS}",
            _cling_filler(code, construct=True),
        )

    if requested == "cling":
        if not compiled:
            raise UsageError(
                "fill='cling' was asked for, but cling could not compile the filler against "
                "this release's Belle2::PXDDigit (see the interpreter's messages above): use "
                "fill='auto'"
            )
        if not stores:
            return constructs(f"fill='cling' was asked for; {why_not}")
        assert code is not None
        return Filler(
            "cling",
            f"fill='cling' was asked for; a filler compiled by cling, {_STORES}",
            _cling_filler(code, construct=False),
            verify=_verifier(code),
            fallback=lambda: constructs("fill='cling' was asked for"),
        )
    # auto
    if stores:
        assert code is not None

        def fallback() -> Filler:
            if has_fill_array:
                return Filler(
                    "fillArray",
                    "this basf2 release has PyStoreArray.fillArray",
                    _fill_array_filler(code),
                )
            return constructs("this basf2 release's PyStoreArray has no fillArray")

        return Filler(
            "cling",
            "the dictionary's Belle2::PXDDigit holds the four unsigned short members of the "
            f"basf2 header: a filler compiled by cling, {_STORES}",
            _cling_filler(code, construct=False),
            verify=_verifier(code),
            fallback=fallback,
        )
    if has_fill_array:
        return Filler(
            "fillArray",
            f"{why_not}; this basf2 release has PyStoreArray.fillArray",
            _fill_array_filler(code),
        )
    if compiled:
        return constructs(f"{why_not}; this basf2 release's PyStoreArray has no fillArray")
    return Filler(
        "python",
        f"{why_not}, and this basf2 release's PyStoreArray has no fillArray",
        _per_hit_filler(belle2),
    )


__all__ = [
    "DIGIT_COLUMNS",
    "FILLER_SOURCE",
    "FILL_PATHS",
    "KERNEL_SOURCE",
    "MAX_DIGIT_CHARGE",
    "FillFunction",
    "Filler",
    "checked_hits",
    "compile_code",
    "compile_filler",
    "digit_table",
    "packed_buffers",
    "pxd_digit_columns",
    "refusal",
    "select_filler",
]
