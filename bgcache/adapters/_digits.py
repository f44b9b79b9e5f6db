"""Putting a pool event into a basf2 ``TClonesArray`` of ``Belle2::PXDDigit``: one call per event.

Below :mod:`bgcache.adapters.basf2` (the module calls :func:`select_filler` at
``initialize`` and the filler at every event); above :mod:`bgcache.hits` (the hit columns).
It owns the PXDDigit columns (:func:`pxd_digit_columns`: the constructor's argument names,
``unsigned short`` each, bounds checked before anything is converted) and the three ways
of filling an array with them:

``fillArray``
    basf2 releases that ship the ``PyStoreArray.fillArray`` pythonization
    (``framework/scripts/basf2/_constwrapper.py``): the columns go to its C++ member
    template in one call. It appends, so the array is cleared first; it indexes the first
    element of each column, so an event without hits is not passed to it.
``cling``
    every other release (ROOT 6 always has cling): :data:`FILLER_SOURCE`, compiled once
    per process by ``ROOT.gInterpreter.Declare`` (a forked basf2 worker inherits it),
    clears the array and fills its slots from the numpy buffers in one C++ loop, the way
    ``TTree::GetEntry`` fills a split branch (or, for a PXDDigit of another layout, by
    constructing ``PXDDigit(VxdID, u, v, charge)`` in place).
``python``
    a loop over hits (``appendNew()`` + ``__assign__`` of a new ``PXDDigit``, the only
    per-hit form that ROOT >= 6.32 accepts for a class without setters): only where the
    filler cannot be compiled (ROOT headers missing from the interpreter's include path, or
    a ``PXDDigit`` without the ``(VxdID, ushort, ushort, ushort)`` constructor), or when
    asked for; 2-3 us a hit on ROOT 6.40, 0.1-0.2 s per event, ~100x the bulk paths
    (docs/performance.md).

Slot assignment (``clones[i] = PXDDigit(...)``, what Belle II's PXDBackgroundGenerator does)
is used by none of them: PyROOT refuses it since ROOT 6.32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bgcache.errors import EventError, UsageError
from bgcache.geometry import N_SENSORS, N_U, N_V, SENSORS, VXD_IDS
from bgcache.hits import SparseEvent

#: Fill paths a module can be asked for (``fill=...``); "auto" takes the first that works.
FILL_PATHS = ("auto", "fillArray", "cling", "python")
#: Names of the PXDDigit constructor's arguments, the keywords of ``fillArray``, in order.
DIGIT_COLUMNS = ("sensorID", "uCellID", "vCellID", "charge")
#: Largest charge a PXDDigit holds (``unsigned short m_charge``).
MAX_DIGIT_CHARGE = 0xFFFF

#: The cling filler. ``fill`` clears the array and puts one digit per hit into it, from the
#: event's own columns (the sensor index becomes its VxdID by a table lookup, the charge is
#: read as uint8 or uint16; ``fill_u8``/``fill_u16`` are its two instances):
#: by default (``member_stores``) as ``TTree::GetEntry`` fills a split TClonesArray branch,
#: ``ExpandCreateFast`` then the four members stored at the offsets the class's dictionary
#: gives (only where the class holds exactly the four ``unsigned short`` members of the
#: basf2 header: ``digit_layout_ok``); else by constructing ``PXDDigit(VxdID, u, v,
#: charge)`` in each slot (placement new, ~4x the time). Returns the number of digits, or -1
#: if the array does not hold Belle2::PXDDigit.
FILLER_SOURCE = r"""
#ifndef BGCACHE_PXD_DIGIT_FILLER_V2
#define BGCACHE_PXD_DIGIT_FILLER_V2
#pragma cling optimize(2)
#include <TClass.h>
#include <TClonesArray.h>
#include <TDataMember.h>
#include <TList.h>
#include <cstring>
#if __has_include(<pxd/dataobjects/PXDDigit.h>)
#include <pxd/dataobjects/PXDDigit.h>
#endif
namespace bgcache_basf2 {
  struct DigitLayout {
    long sensor = -1, u = -1, v = -1, charge = -1;
    bool ok = false;
  };
  inline DigitLayout digit_layout()
  {
    DigitLayout layout;
    TClass* cls = Belle2::PXDDigit::Class();
    int members = 0;
    for (TObject* item : *cls->GetListOfDataMembers()) {
      if (not (static_cast<TDataMember*>(item)->Property() & kIsStatic)) ++members;
    }
    auto offset = [cls](const char* name) -> long {
      TDataMember* member = cls->GetDataMember(name);
      if (member == nullptr or member->GetArrayDim() != 0
          or std::strcmp(member->GetTypeName(), "unsigned short") != 0) return -1;
      return cls->GetDataMemberOffset(name);
    };
    layout.sensor = offset("m_sensorID");
    layout.u = offset("m_uCellID");
    layout.v = offset("m_vCellID");
    layout.charge = offset("m_charge");
    layout.ok = members == 4 and layout.sensor > 0 and layout.u > 0 and layout.v > 0
                and layout.charge > 0;
    return layout;
  }
  inline bool digit_layout_ok() { return digit_layout().ok; }
  /** The digits of n hits: sensor index (0..39, via the 40 packed VxdIDs), u, v, charge. */
  template <class Charge>
  inline long fill(TClonesArray* array, long n, const unsigned char* sensor,
                   const unsigned short* vxd_ids, const unsigned short* u,
                   const unsigned short* v, const Charge* charge, bool member_stores)
  {
    static const DigitLayout layout = digit_layout();
    if (array == nullptr or array->GetClass() != Belle2::PXDDigit::Class()) return -1;
    array->Clear();
    if (member_stores and layout.ok) {
      array->ExpandCreateFast(n);
      for (long i = 0; i < n; ++i) {
        char* digit = reinterpret_cast<char*>(array->UncheckedAt(i));
        *reinterpret_cast<unsigned short*>(digit + layout.sensor) = vxd_ids[sensor[i]];
        *reinterpret_cast<unsigned short*>(digit + layout.u) = u[i];
        *reinterpret_cast<unsigned short*>(digit + layout.v) = v[i];
        *reinterpret_cast<unsigned short*>(digit + layout.charge) = charge[i];
      }
    } else {
      if (n > array->Capacity()) array->Expand(n);
      for (long i = 0; i < n; ++i)
        new ((*array)[i]) Belle2::PXDDigit(Belle2::VxdID(vxd_ids[sensor[i]]), u[i], v[i],
                                           charge[i]);
    }
    return array->GetEntriesFast();
  }
  inline long fill_u8(TClonesArray* array, long n, const unsigned char* sensor,
                      const unsigned short* vxd_ids, const unsigned short* u,
                      const unsigned short* v, const unsigned char* charge, bool member_stores)
  {
    return fill(array, n, sensor, vxd_ids, u, v, charge, member_stores);
  }
  inline long fill_u16(TClonesArray* array, long n, const unsigned char* sensor,
                       const unsigned short* vxd_ids, const unsigned short* u,
                       const unsigned short* v, const unsigned short* charge,
                       bool member_stores)
  {
    return fill(array, n, sensor, vxd_ids, u, v, charge, member_stores);
  }
}
#endif
"""

Columns = dict[str, np.ndarray]
#: ``fill(store_array, event)``: replaces the array's content with the event's digits.
FillFunction = Callable[[Any, SparseEvent], None]


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
            raise EventError(
                f"hit column {name!r} holds {lo}..{hi}, a PXDDigit takes {low}..{high}: "
                "the event cannot be stored as PXDDigits"
            )
    return columns  # type: ignore[return-value]


def pxd_digit_columns(event: SparseEvent) -> Columns:
    """The event's hits as PXDDigit constructor columns, contiguous ``uint16`` each.

    Raises:
        EventError: see :func:`checked_hits` (run first: no value wraps in the conversion).

    Example:
        >>> cols = pxd_digit_columns(SparseEvent([39], [2], [5], [300]))
        >>> {k: v.tolist() for k, v in cols.items()}
        {'sensorID': [19520], 'uCellID': [2], 'vCellID': [5], 'charge': [300]}
    """
    sensor, u, v, charge = checked_hits(event)
    return {
        "sensorID": VXD_IDS.take(sensor),  # a new contiguous array; faster than VXD_IDS[sensor]
        "uCellID": np.ascontiguousarray(u, dtype=np.uint16),
        "vCellID": np.ascontiguousarray(v, dtype=np.uint16),
        "charge": np.ascontiguousarray(charge, dtype=np.uint16),
    }


@dataclass(frozen=True)
class Filler:
    """One way of filling the digits array; ``fill(store_array, event)`` replaces its content.

    Attributes:
        path: ``"fillArray"``, ``"cling"`` or ``"python"``.
        reason: why this path was chosen (logged at ``initialize``).
        fill: the function.
    """

    path: str
    reason: str
    fill: FillFunction

    def __call__(self, store_array: Any, event: SparseEvent) -> None:
        self.fill(store_array, event)


def _fill_with_fill_array(store_array: Any, event: SparseEvent) -> None:
    columns = pxd_digit_columns(event)
    store_array.getPtr().Clear()  # fillArray appends
    if columns["charge"].shape[0]:  # it reads column[0]: an empty column is an IndexError
        store_array.fillArray(**columns)


#: Processes (pid -> ROOT module) in which FILLER_SOURCE was declared.
_compiled: dict[int, Any] = {}


def compile_filler(root: Any, member_stores: bool | None = None) -> FillFunction | None:
    """The cling filler, declared once per process; None if cling cannot compile it.

    Args:
        root: the ROOT module.
        member_stores: store the members as ``TTree::GetEntry`` does (None: where the
            class's layout allows it, see :data:`FILLER_SOURCE`); False constructs each
            digit.
    """
    if _compiled.get(os.getpid()) is not root:
        if not root.gInterpreter.Declare(FILLER_SOURCE):
            return None
        _compiled[os.getpid()] = root
    code = root.bgcache_basf2
    stores = bool(code.digit_layout_ok()) if member_stores is None else member_stores
    vxd_ids = np.ascontiguousarray(VXD_IDS, dtype=np.uint16)
    # PyROOT passes a numpy array as the pointer to its data; an empty array has none
    no_hits = (np.zeros(1, np.uint8), np.zeros(1, np.uint16), np.zeros(1, np.uint16))

    def fill(store_array: Any, event: SparseEvent) -> None:
        sensor, u, v, charge = checked_hits(event)
        n = int(charge.shape[0])
        if not n:
            sensor, u, v, charge = (*no_hits, no_hits[0])
        narrow = charge.dtype == np.uint8  # pool events; wider ones are checked to fit 16 bits
        function = code.fill_u8 if narrow else code.fill_u16
        sensor = np.ascontiguousarray(sensor, dtype=np.uint8)  # 0..39, checked
        u = np.ascontiguousarray(u, dtype=np.uint16)
        v = np.ascontiguousarray(v, dtype=np.uint16)
        charge = np.ascontiguousarray(charge, dtype=np.uint8 if narrow else np.uint16)
        filled = function(store_array.getPtr(), n, sensor, vxd_ids, u, v, charge, stores)
        if filled != n:
            raise UsageError(
                f"the cling filler put {filled} of {n} digits into {store_array.getName()}: "
                "the array does not hold Belle2::PXDDigit"
            )

    return fill


def _per_hit_filler(belle2: Any) -> FillFunction:
    make_digit = belle2.PXDDigit
    vxd_ids = {s.vxd_id: belle2.VxdID(s.vxd_id) for s in SENSORS}

    def fill(store_array: Any, event: SparseEvent) -> None:
        columns = pxd_digit_columns(event)
        store_array.getPtr().Clear()
        append = store_array.appendNew
        for sensor, u, v, charge in zip(*(columns[k].tolist() for k in DIGIT_COLUMNS), strict=True):
            append().__assign__(make_digit(vxd_ids[sensor], u, v, charge))

    return fill


def select_filler(belle2: Any, root: Any, requested: str = "auto") -> Filler:
    """The fill path for this basf2 release: ``requested``, or with "auto" the first it can take.

    "auto" takes ``fillArray`` where ``PyStoreArray`` has it, else the cling filler, else the
    per-hit loop (:class:`Filler.reason` says why).

    Raises:
        UsageError: an unknown path, or a requested one this release cannot take.
    """
    if requested not in FILL_PATHS:
        raise UsageError(f"fill must be one of {', '.join(FILL_PATHS)}, got {requested!r}")
    has_fill_array = callable(getattr(belle2.PyStoreArray, "fillArray", None))
    if requested in ("auto", "fillArray"):
        if has_fill_array:
            return Filler(
                "fillArray", "this basf2 release has PyStoreArray.fillArray", _fill_with_fill_array
            )
        if requested == "fillArray":
            raise UsageError(
                "fill='fillArray' was asked for, but this basf2 release's PyStoreArray has no "
                "fillArray (a newer release has it): use fill='auto'"
            )
    if requested == "python":
        return Filler("python", "fill='python' was asked for", _per_hit_filler(belle2))
    no_fill_array = (
        "fill='cling' was asked for"
        if requested == "cling"
        else "this basf2 release's PyStoreArray has no fillArray"
    )
    compiled = compile_filler(root)
    if compiled is not None:
        how = (
            "members stored as TTree::GetEntry fills a split branch"
            if root.bgcache_basf2.digit_layout_ok()
            else "a PXDDigit constructed per digit: the class is not the four unsigned "
            "shorts of the basf2 header"
        )
        return Filler("cling", f"{no_fill_array}; a filler compiled by cling, {how}", compiled)
    if requested == "cling":
        raise UsageError(
            "fill='cling' was asked for, but cling could not compile the filler against this "
            "release's Belle2::PXDDigit (see the interpreter's messages above): use fill='auto'"
        )
    return Filler(
        "python",
        f"{no_fill_array} and cling could not compile the filler (see the interpreter's "
        "messages above)",
        _per_hit_filler(belle2),
    )


__all__ = [
    "DIGIT_COLUMNS",
    "FILLER_SOURCE",
    "FILL_PATHS",
    "MAX_DIGIT_CHARGE",
    "FillFunction",
    "Filler",
    "checked_hits",
    "compile_filler",
    "pxd_digit_columns",
    "select_filler",
]
