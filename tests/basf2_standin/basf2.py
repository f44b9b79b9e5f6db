"""Stand-in for tests; NOT basf2.

basf2 cannot be installed where bgcache is tested, but ROOT can: the Belle II classes the
adapter touches (``Belle2::VxdID``, ``PXDDigit``, ``BackgroundInfo``, ``DataStore``,
``PyStoreArray``, ``PyStoreObj``, ``ProcHandler``) are C++ replicas in ``belle2_standin.h``
next to this file, compiled by the real ROOT's cling when this module is imported (as
``import basf2`` loads the Belle II libraries), so ``ROOT.Belle2.PXDDigit`` is a real class
and ``PyStoreArray.getPtr()`` a real ``TClonesArray``. This file holds only what ROOT cannot
provide, a few lines of Python per basf2 call the adapter makes:

* :class:`Module` (``set_name``/``name``/``type``, ``set_property_flags``/``has_properties``,
  ``param``/``available_params``, ``initialize``/``event``/``terminate``) and
  :class:`ModulePropFlags`;
* :class:`Path` (``add_module``, ``modules``), :func:`create_path`, :func:`register_module`
  (``"BGOverlayInput"`` gives :class:`BGOverlayInputStandIn`, other names a no-op module);
* :func:`process`: initialize all modules, run ``event`` ``max_event`` times, terminate
  (event-durability arrays are *not* cleared between events, so a module that forgets to
  clear its collection shows it);
* ``B2INFO``/``B2WARNING``/``B2ERROR``/``B2FATAL``, appended to :data:`LOG`;
* :func:`get_random_seed`/:func:`set_random_seed` (the framework seed, a string);
* the ``PyStoreArray.fillArray`` pythonization of newer basf2 releases
  (``framework/scripts/basf2/_constwrapper.py``): present or absent as :func:`use_fill_array`
  says, to stand for a release with it or an older one.

It is importable as ``basf2`` only while a test puts this folder on ``sys.path`` (the
``standin`` fixture of ``tests/test_adapter_basf2.py``); bgcache itself never imports it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path as _FilePath
from typing import Any, ClassVar

import numpy as np
import ROOT

HEADER = _FilePath(__file__).with_name("belle2_standin.h")
if not ROOT.gInterpreter.Declare(HEADER.read_text()):  # include-guarded: once per process
    raise ImportError(f"cling could not compile {HEADER}")
Belle2 = ROOT.Belle2

#: ``(level, message)`` of every log call, in order (cleared by :func:`reset`).
LOG: list[tuple[str, str]] = []
_SEED = ["standin-seed"]


def reset() -> None:
    """Forget the log, restore the default framework seed, empty the DataStore, one process."""
    LOG.clear()
    _SEED[0] = "standin-seed"
    Belle2.DataStore.Instance().reset()
    Belle2.ProcHandler.setStandIn(-1, 0)


def registrations() -> list[tuple[str, int, int]]:
    """``(name, durability, store flags)`` of each registration, in order (a test helper)."""
    return [
        (str(r.name.decode() if isinstance(r.name, bytes) else r.name), r.durability, r.storeFlags)
        for r in Belle2.DataStore.Instance().registrations()
    ]


def read_digits(name: str) -> np.ndarray:
    """The digits of array ``name`` as an (n, 4) uint16 array: sensor id, u, v, charge."""
    array = Belle2.PyStoreArray(name)
    n = array.getEntries()
    out = np.zeros((n, 4), np.uint16)
    if n:  # PyROOT passes an array's data pointer; an empty array has none
        assert Belle2.StandIn.readDigits(name, out.reshape(-1), n) == n
    return out


# -- PyStoreArray.fillArray -------------------------------------------------------------------
#: numpy dtype of a constructor argument type, and the C++ type of a column (as basf2's).
_ARGUMENT_DTYPES = {
    "short": "short",
    "unsigned short": "ushort",
    "int": "intc",
    "unsigned int": "uintc",
    "long": "long",
    "unsigned long": "ulong",
    "float": "single",
    "double": "double",
    "Belle2::VxdID": "ushort",
}
_POINTER_TYPES = {
    "int16": "short *",
    "uint16": "unsigned short *",
    "int32": "int *",
    "uint32": "unsigned int *",
    "int64": "long *",
    "uint64": "unsigned long *",
    "float32": "float *",
    "float64": "double *",
}


def _fill_array(self: Any, **columns: Any) -> None:
    """``PyStoreArray.fillArray(**columns)`` as newer basf2 releases pythonize it.

    The keywords are the argument names of one of the class's constructors; each column is
    converted with ``astype`` to the argument's type where its first element differs (so a
    value that does not fit wraps, as in basf2, and an empty column raises IndexError); one
    object per row is appended (the array is not cleared).
    """
    obj_class = self.getClass()
    class_name = obj_class.GetName()
    constructors = []
    for method in obj_class.GetListOfMethods():
        if method.GetName() == class_name.split(":")[-1]:
            arguments = {a.GetName(): a.GetTypeName() for a in method.GetListOfMethodArgs()}
            constructors.append(arguments)
            if arguments.keys() == columns.keys():
                break
    else:
        raise TypeError(
            f"No corresponding constructor found for {class_name}({', '.join(columns)}); "
            f"available: {constructors}"
        )
    for name, type_name in arguments.items():
        wanted = np.dtype(_ARGUMENT_DTYPES[type_name])
        if columns[name][0].dtype != wanted:
            columns[name] = columns[name].astype(wanted)
    ordered = [columns[name] for name in arguments]
    if not all(len(column) == len(ordered[0]) for column in ordered[1:]):
        raise ValueError("The lengths of the passed arrays are not the same")
    types = [_POINTER_TYPES[type(column[0]).__name__] for column in ordered]
    Belle2.StandIn.fillArray[(class_name, *types)](self, len(ordered[0]), *ordered)


def use_fill_array(enabled: bool) -> None:
    """Stand for a basf2 release with the ``fillArray`` pythonization, or without it."""
    if enabled:
        Belle2.PyStoreArray.fillArray = _fill_array
    elif "fillArray" in vars(Belle2.PyStoreArray):
        delattr(Belle2.PyStoreArray, "fillArray")


# -- logging and the framework seed -----------------------------------------------------------
def B2DEBUG(level: int, message: object) -> None:
    LOG.append(("DEBUG", str(message)))


def B2INFO(message: object) -> None:
    LOG.append(("INFO", str(message)))


def B2RESULT(message: object) -> None:
    LOG.append(("RESULT", str(message)))


def B2WARNING(message: object) -> None:
    LOG.append(("WARNING", str(message)))


def B2ERROR(message: object) -> None:
    LOG.append(("ERROR", str(message)))


def B2FATAL(message: object) -> None:
    """Log and end the job (basf2 ends the process; the stand-in raises SystemExit)."""
    LOG.append(("FATAL", str(message)))
    raise SystemExit(1)


def messages(level: str) -> list[str]:
    """The logged messages of one level (a test helper, not basf2 API)."""
    return [message for lvl, message in LOG if lvl == level]


def set_random_seed(seed: object) -> None:
    _SEED[0] = str(seed)


def get_random_seed() -> str:
    return _SEED[0]


# -- modules and paths ------------------------------------------------------------------------
class ModulePropFlags(enum.IntFlag):
    """The module property flags (values as in basf2's Module::EModulePropFlags)."""

    INPUT = 1
    OUTPUT = 2
    PARALLELPROCESSINGCERTIFIED = 4
    HISTOGRAMMANAGER = 8
    INTERNALSERIALIZER = 16
    TERMINATEINALLPROCESSES = 32
    DONTCOLLECTSTATISTICS = 64


@dataclass
class ModuleParamInfo:
    """One entry of ``Module.available_params()`` (the attributes the adapter reads)."""

    name: str
    values: Any
    default: Any


class Module:
    """Base class of modules (Python modules derive from it and call ``__init__``)."""

    #: parameters and defaults of the module type (a registered module's)
    DEFAULT_PARAMS: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self._name = type(self).__name__
        self._type = type(self).__name__
        self._flags = ModulePropFlags(0)
        self.params: dict[str, Any] = dict(self.DEFAULT_PARAMS)

    def name(self) -> str:
        return self._name

    def set_name(self, name: str) -> None:
        self._name = name

    def type(self) -> str:
        return self._type

    def set_property_flags(self, flags: int) -> None:
        self._flags = ModulePropFlags(flags)

    def has_properties(self, flags: int) -> bool:
        return (self._flags & flags) == flags

    def param(self, name: str, value: Any) -> None:
        self.params[name] = value

    def available_params(self) -> list[ModuleParamInfo]:
        return [
            ModuleParamInfo(name, value, self.DEFAULT_PARAMS.get(name))
            for name, value in self.params.items()
        ]

    def initialize(self) -> None:
        pass

    def event(self) -> None:
        pass

    def terminate(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<stand-in module {self._name}>"


class BGOverlayInputStandIn(Module):
    """Acts like BGOverlayInput for the adapter: creates the ``BackgroundInfo`` object
    (persistent; name: parameter ``bkgInfoName``, "" for the default "BackgroundInfo") with
    the extension ``extensionName`` (default "_beamBG"), registers ``PXDDigits`` + extension,
    and each event puts :data:`MARKER_DIGITS` digits of charge :data:`MARKER_CHARGE` there,
    as if read from a background file."""

    DEFAULT_PARAMS: ClassVar[dict[str, Any]] = {
        "inputFileNames": [],
        "extensionName": "_beamBG",
        "bkgInfoName": "",
    }
    MARKER_DIGITS = 3
    MARKER_CHARGE = 999

    def __init__(self) -> None:
        super().__init__()
        self._name = self._type = "BGOverlayInput"

    def _digits_name(self) -> str:
        return "PXDDigits" + str(self.params["extensionName"])

    def initialize(self) -> None:
        store = Belle2.DataStore
        info_name = self.params["bkgInfoName"] or "BackgroundInfo"
        if not store.Instance().registerEntry(
            info_name, store.c_Persistent, Belle2.BackgroundInfo.Class(), False, store.c_WriteOut
        ):
            raise RuntimeError(f"stand-in: {info_name} is registered already")
        info = Belle2.PyStoreObj(info_name, store.c_Persistent).obj()
        info.setExtensionName(str(self.params["extensionName"]))
        digits = Belle2.PyStoreArray(Belle2.PXDDigit.Class(), self._digits_name(), store.c_Event)
        digits.registerInDataStore("", store.c_DontWriteOut | store.c_ErrorIfAlreadyRegistered)

    def event(self) -> None:
        Belle2.StandIn.putDigits(self._digits_name(), self.MARKER_DIGITS, self.MARKER_CHARGE)


def register_module(name: str, **params: Any) -> Module:
    """A module by name: ``"BGOverlayInput"`` acts (see above), any other does nothing."""
    module: Module = BGOverlayInputStandIn() if name == "BGOverlayInput" else Module()
    module._name = module._type = name
    for key, value in params.items():
        module.param(key, value)
    return module


class Path:
    """An ordered list of modules."""

    def __init__(self) -> None:
        self._modules: list[Module] = []

    def add_module(self, module: Module | str, **params: Any) -> Module:
        if isinstance(module, str):
            module = register_module(module)
        for key, value in params.items():
            module.param(key, value)
        self._modules.append(module)
        return module

    def modules(self) -> list[Module]:
        return list(self._modules)

    def __repr__(self) -> str:
        return "[" + " -> ".join(m.name() for m in self._modules) + "]"


def create_path() -> Path:
    return Path()


def process(path: Path, max_event: int = 0) -> None:
    """Initialize every module, run ``max_event`` events, terminate the initialized ones."""
    started: list[Module] = []
    try:
        for module in path.modules():
            module.initialize()
            started.append(module)
        for _ in range(max_event):
            for module in path.modules():
                module.event()
    finally:
        for module in started:
            module.terminate()
