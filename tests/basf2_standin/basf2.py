"""Stand-in for tests; NOT basf2.

A few lines of Python that behave like the handful of ``basf2`` calls
:mod:`bgcache.adapters.basf2` makes, so its tests run where basf2 cannot be installed.
It is importable as ``basf2`` only while a test puts this folder on ``sys.path`` (the
``standin`` fixture of ``tests/test_adapter_basf2.py``); bgcache itself never imports it.

What it models, and nothing more:

* :class:`Module` (``set_name``/``name``, ``set_property_flags``/``has_properties``,
  ``param``, ``initialize``/``event``/``terminate``) and :class:`ModulePropFlags`;
* :class:`Path` (``add_module``, ``modules``), :func:`create_path`, :func:`register_module`
  (``"BGOverlayInput"`` gives :class:`BGOverlayInputStandIn`, other names a no-op module);
* :func:`process`: initialize all modules, run ``event`` ``max_event`` times, terminate
  (event-durability arrays are *not* cleared between events, so a module that forgets to
  clear its collection shows it);
* ``B2INFO``/``B2WARNING``/``B2ERROR``/``B2FATAL``, appended to :data:`LOG`;
* :func:`get_random_seed`/:func:`set_random_seed` (the framework seed, a string).

The DataStore and the Belle II classes are in the ``ROOT`` stand-in next to this file.
"""

from __future__ import annotations

import enum
from typing import Any

#: ``(level, message)`` of every log call, in order (cleared by :func:`reset`).
LOG: list[tuple[str, str]] = []
_SEED = ["standin-seed"]


def reset() -> None:
    """Forget the log and restore the default framework seed."""
    LOG.clear()
    _SEED[0] = "standin-seed"


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


class ModulePropFlags(enum.IntFlag):
    """The module property flags (values as in basf2's Module::EModulePropFlags)."""

    INPUT = 1
    OUTPUT = 2
    PARALLELPROCESSINGCERTIFIED = 4
    HISTOGRAMMANAGER = 8
    INTERNALSERIALIZER = 16
    TERMINATEINALLPROCESSES = 32
    DONTCOLLECTSTATISTICS = 64


class Module:
    """Base class of modules (Python modules derive from it and call ``__init__``)."""

    def __init__(self) -> None:
        self._name = type(self).__name__
        self._flags = ModulePropFlags(0)
        self.params: dict[str, Any] = {}

    def name(self) -> str:
        return self._name

    def set_name(self, name: str) -> None:
        self._name = name

    def set_property_flags(self, flags: int) -> None:
        self._flags = ModulePropFlags(flags)

    def has_properties(self, flags: int) -> bool:
        return (self._flags & flags) == flags

    def param(self, name: str, value: Any) -> None:
        self.params[name] = value

    def initialize(self) -> None:
        pass

    def event(self) -> None:
        pass

    def terminate(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<stand-in module {self._name}>"


class BGOverlayInputStandIn(Module):
    """Acts like BGOverlayInput for the adapter: creates ``BackgroundInfo`` (persistent,
    parameter ``extensionName``, default ``"_beamBG"``), registers ``PXDDigits`` +
    extension, and each event puts :data:`MARKER_DIGITS` digits with charge
    :data:`MARKER_CHARGE` there, as if read from a background file."""

    MARKER_DIGITS = 3
    MARKER_CHARGE = 999

    def __init__(self) -> None:
        super().__init__()
        self.set_name("BGOverlayInput")
        self.params["extensionName"] = "_beamBG"

    def _digits(self) -> Any:
        import ROOT

        belle2 = ROOT.Belle2
        name = "PXDDigits" + self.params["extensionName"]
        return belle2.PyStoreArray(belle2.PXDDigit.Class(), name, belle2.DataStore.c_Event)

    def initialize(self) -> None:
        import ROOT

        belle2 = ROOT.Belle2
        info = belle2.BackgroundInfo()
        info.setExtensionName(self.params["extensionName"])
        ROOT.put_object("BackgroundInfo", info, belle2.DataStore.c_Persistent)
        self._digits().registerInDataStore("", belle2.DataStore.c_DontWriteOut)

    def event(self) -> None:
        import ROOT

        array = self._digits()
        array.getPtr().Clear()
        for i in range(self.MARKER_DIGITS):
            array.appendNew()
            array.getPtr()[i] = ROOT.Belle2.PXDDigit(
                ROOT.Belle2.VxdID(1, 1, 1), i, i, self.MARKER_CHARGE
            )


def register_module(name: str, **params: Any) -> Module:
    """A module by name: ``"BGOverlayInput"`` acts (see above), any other does nothing."""
    module: Module = BGOverlayInputStandIn() if name == "BGOverlayInput" else Module()
    module.set_name(name)
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
