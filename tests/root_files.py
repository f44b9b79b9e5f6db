"""Background overlay ROOT files written by real ROOT, for the importer's tests.

Stand-in for tests; NOT basf2. ``Belle2::PXDDigit`` is the cling-compiled replica of
``tests/basf2_standin/belle2_standin.h`` (members, types and class version as in basf2's
``pxd/dataobjects/include/PXDDigit.h``); the files are laid out as basf2's RootOutput
writes them: TTree ``tree`` with a branch ``PXDDigits``, a TClonesArray of PXDDigit, split
at level 99 unless asked otherwise. A C++ helper fills each entry's array from numpy
columns (one call per entry), so full-size events (~70,000 digits) cost milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

ROOT = pytest.importorskip("ROOT")

HEADER = Path(__file__).parent / "basf2_standin" / "belle2_standin.h"
if not ROOT.gInterpreter.Declare(HEADER.read_text()):  # include-guarded: once per process
    raise ImportError(f"cling could not compile {HEADER}")

_FILLER = r"""
#ifndef BGCACHE_TEST_ROOT_FILES
#define BGCACHE_TEST_ROOT_FILES
namespace bgcache_test {
  inline void fill_digits(TClonesArray* array, long n, const unsigned short* vxd,
                          const unsigned short* u, const unsigned short* v,
                          const unsigned short* charge)
  {
    array->Clear();
    for (long i = 0; i < n; ++i)
      new ((*array)[i]) Belle2::PXDDigit(Belle2::VxdID(vxd[i]), u[i], v[i], charge[i]);
  }
}
#endif
"""
if not ROOT.gInterpreter.Declare(_FILLER):
    raise ImportError("cling could not compile the digit filler")

#: ROOT compression settings (algorithm * 100 + level) the tests write: zlib-1, zstd-5,
#: lz4-4, lzma-1.
COMPRESSIONS = {"zlib-1": 101, "zstd-5": 505, "lz4-4": 404, "lzma-1": 201}

#: One entry: the digit columns (VxdID, u, v, charge), each a sequence of equal length.
Digits = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]


def event_digits(event: object, *, shuffle: int | None = 0) -> Digits:
    """The PXDDigit columns of a bgcache event, in a shuffled order (as a digitizer may
    write them; the importer sorts) unless ``shuffle`` is None."""
    digits = event.to_digits()  # type: ignore[attr-defined]
    columns = [
        np.asarray(digits[k], dtype=np.uint16) for k in ("vxd_id", "u_cell", "v_cell", "charge")
    ]
    if shuffle is not None:
        order = np.random.default_rng(shuffle).permutation(columns[0].size)
        columns = [c[order] for c in columns]
    return tuple(columns)  # type: ignore[return-value]


def write_overlay_file(
    path: str | os.PathLike[str],
    entries: Sequence[Digits],
    *,
    split: int = 99,
    compression: int = COMPRESSIONS["zlib-1"],
    branch: str = "PXDDigits",
    tree_name: str = "tree",
    extra_branch: str | None = None,
    clones_class: str = "Belle2::PXDDigit",
) -> Path:
    """Write a background overlay file: one tree entry per item of ``entries`` (an item that
    is the same object as the one before is written again without refilling the array, so
    many entries of millions of digits cost only ROOT's streaming).

    Args:
        split: the branch's split level (99 as RootOutput writes it; 0 unsplit).
        compression: ROOT's compression setting (see :data:`COMPRESSIONS`).
        branch, tree_name: other names, for files that are not overlay files.
        extra_branch: also a branch of this name (an int per entry), e.g.
            ``BackgroundMetaData`` to mark a BG mixing sample.
        clones_class: the class the TClonesArray holds (another one: write empty entries).
    """
    path = Path(path)
    f = ROOT.TFile(str(path), "RECREATE", "", compression)
    try:
        tree = ROOT.TTree(tree_name, tree_name)
        array = ROOT.TClonesArray(clones_class)
        tree.Branch(branch, array, 32000, split)
        extra = np.zeros(1, dtype=np.int32)
        if extra_branch is not None:
            tree.Branch(extra_branch, extra, f"{extra_branch}/I")
        last = None
        for i, digits in enumerate(entries):
            if digits is not last:  # an entry given again (the same object) is still filled
                cols = [np.ascontiguousarray(c, dtype=np.uint16) for c in digits]
                n = int(cols[0].size)
                if n == 0:
                    array.Clear()
                else:
                    ROOT.bgcache_test.fill_digits(array, n, *cols)
                last = digits
            extra[0] = i
            tree.Fill()
        tree.Write()
    finally:
        f.Close()
    return path
