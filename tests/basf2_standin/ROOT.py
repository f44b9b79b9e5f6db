"""Stand-in for tests; NOT basf2 (nor ROOT).

Models the few ``ROOT.Belle2`` names that :mod:`bgcache.adapters.basf2` uses, as a basf2
installation's ROOT provides them: ``DataStore`` (durabilities and store flags),
``PyStoreArray``, ``PyStoreObj``, ``TClonesArray``, ``PXDDigit``, ``VxdID``,
``BackgroundInfo`` and ``ProcHandler``. Importable as ``ROOT`` only while a test puts this
folder on ``sys.path`` (see ``basf2.py`` next to it).

State a test inspects or sets (reset by :func:`reset`):

* :data:`STORE` — the DataStore: ``(durability, name) -> object`` (a TClonesArray for arrays);
* :data:`REGISTRATIONS` — ``(name, durability, store flags)`` of every
  ``registerInDataStore`` call, in order;
* :data:`PROCESS` — what ``ProcHandler`` answers (default: no parallel processing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: The DataStore: (durability, name) -> object.
STORE: dict[tuple[int, str], Any] = {}
#: (name, durability, flags) of each registration, in order.
REGISTRATIONS: list[tuple[str, int, int]] = []
#: What ProcHandler reports: EvtProcID -1 means no parallel processing.
PROCESS: dict[str, int] = {"id": -1, "workers": 0}


def reset() -> None:
    """Empty the DataStore, forget registrations, single-process mode."""
    STORE.clear()
    REGISTRATIONS.clear()
    PROCESS.update(id=-1, workers=0)


def put_object(name: str, obj: Any, durability: int = 0) -> None:
    """Put a store object in the DataStore (a test helper, not ROOT API)."""
    STORE[(durability, name)] = obj


class DataStore:
    """Durabilities (EDurability) and registration flags (EStoreFlags)."""

    c_Event = 0
    c_Persistent = 1
    c_WriteOut = 0
    c_DontWriteOut = 1
    c_ErrorIfAlreadyRegistered = 2


class VxdID:
    """Packed sensor id: ``VxdID(id)`` or ``VxdID(layer, ladder, sensor[, segment])``."""

    __slots__ = ("_id",)

    def __init__(self, *args: int) -> None:
        if len(args) == 1:
            self._id = int(args[0])
        elif len(args) in (3, 4):
            layer, ladder, sensor, *segment = args
            self._id = layer << 13 | ladder << 8 | sensor << 5 | (segment[0] if segment else 0)
        else:
            raise TypeError(f"VxdID takes 1, 3 or 4 integers, got {args!r}")

    def getID(self) -> int:
        return self._id

    def getLayerNumber(self) -> int:
        return self._id >> 13

    def getLadderNumber(self) -> int:
        return (self._id >> 8) & 0x1F

    def getSensorNumber(self) -> int:
        return (self._id >> 5) & 0x7

    def __int__(self) -> int:
        return self._id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VxdID) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"VxdID({self.getLayerNumber()}.{self.getLadderNumber()}.{self.getSensorNumber()})"


class PXDDigit:
    """``PXDDigit(VxdID sensorID, u, v, charge)``; the default one is empty."""

    __slots__ = ("_charge", "_sensor", "_u", "_v")

    def __init__(
        self, sensorID: VxdID | None = None, uCellID: int = 0, vCellID: int = 0, charge: int = 0
    ) -> None:
        if sensorID is not None and not isinstance(sensorID, VxdID):
            raise TypeError(f"PXDDigit needs a VxdID, got {sensorID!r}")
        self._sensor = sensorID if sensorID is not None else VxdID(0)
        self._u, self._v, self._charge = uCellID, vCellID, charge

    @classmethod
    def Class(cls) -> type:
        """The stand-in's TClass is the Python class."""
        return cls

    def getSensorID(self) -> VxdID:
        return self._sensor

    def getUCellID(self) -> int:
        return self._u

    def getVCellID(self) -> int:
        return self._v

    def getCharge(self) -> int:
        return self._charge


class BackgroundInfo:
    """What BGOverlayInput records; the adapter reads only the extension name."""

    def __init__(self) -> None:
        self._extension = "_beamBG"

    def getExtensionName(self) -> str:
        return self._extension

    def setExtensionName(self, name: str) -> None:
        self._extension = name


class TClonesArray:
    """Items of one class; ``array[i] = obj`` replaces an existing slot (as PyROOT's)."""

    def __init__(self, cls: type) -> None:
        self._cls = cls
        self._items: list[Any] = []

    def GetClass(self) -> type:
        return self._cls

    def Clear(self, option: str = "") -> None:
        self._items.clear()

    def GetEntriesFast(self) -> int:
        return len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Any:
        return self._items[i]

    def __setitem__(self, i: int, obj: Any) -> None:
        if not 0 <= i < len(self._items):
            raise IndexError(f"TClonesArray slot {i} does not exist ({len(self._items)} slots)")
        if not isinstance(obj, self._cls):
            raise TypeError(f"cannot store {type(obj).__name__} in a {self._cls.__name__} array")
        self._items[i] = obj

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))


class PyStoreArray:
    """``PyStoreArray(name[, durability])`` or ``PyStoreArray(cls, name[, durability])``."""

    def __init__(self, *args: Any) -> None:
        if args and isinstance(args[0], type):
            self._cls: type | None = args[0]
            args = args[1:]
        else:
            self._cls = None
        self._name: str = args[0]
        self._durability: int = args[1] if len(args) > 1 else DataStore.c_Event

    def getName(self) -> str:
        return self._name

    def registerInDataStore(self, name: str = "", flags: int = DataStore.c_WriteOut) -> bool:
        self._name = name or self._name
        REGISTRATIONS.append((self._name, self._durability, flags))
        key = (self._durability, self._name)
        existing = STORE.get(key)
        if existing is None:
            if self._cls is None:
                return False  # the real one derives the class from default names only
            STORE[key] = TClonesArray(self._cls)
        elif self._cls is not None and existing.GetClass() is not self._cls:
            return False
        return True

    def _entry(self) -> TClonesArray:
        entry = STORE.get((self._durability, self._name))
        if not isinstance(entry, TClonesArray):
            raise RuntimeError(f"stand-in: array {self._name!r} is not registered")
        return entry

    def isValid(self) -> bool:
        return isinstance(STORE.get((self._durability, self._name)), TClonesArray)

    def getPtr(self) -> TClonesArray:
        return self._entry()

    def appendNew(self) -> Any:
        entry = self._entry()
        obj = entry.GetClass()()
        entry._items.append(obj)
        return obj

    def getEntries(self) -> int:
        return len(self._entry())

    def __len__(self) -> int:
        return self.getEntries()

    def __getitem__(self, i: int) -> Any:
        return self._entry()[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entry())


class PyStoreObj:
    """``PyStoreObj(name[, durability])``; attribute access goes to the stored object."""

    def __init__(self, name: str, durability: int = DataStore.c_Event) -> None:
        self._key = (durability, name)

    def isValid(self) -> bool:
        return self._key in STORE

    def obj(self) -> Any:
        return STORE.get(self._key)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        obj = self.obj()
        if obj is None:
            raise AttributeError(f"stand-in: store object {self._key[1]!r} does not exist")
        return getattr(obj, attr)


class ProcHandler:
    """Parallel-processing queries, answered from :data:`PROCESS`."""

    @staticmethod
    def parallelProcessingUsed() -> bool:
        return PROCESS["id"] != -1

    @staticmethod
    def isWorkerProcess() -> bool:
        return 0 <= PROCESS["id"] < 10000

    @staticmethod
    def EvtProcID() -> int:
        return PROCESS["id"]

    @staticmethod
    def numEventProcesses() -> int:
        return PROCESS["workers"]


class Belle2:
    """The ``ROOT.Belle2`` namespace."""

    DataStore = DataStore
    VxdID = VxdID
    PXDDigit = PXDDigit
    BackgroundInfo = BackgroundInfo
    PyStoreArray = PyStoreArray
    PyStoreObj = PyStoreObj
    ProcHandler = ProcHandler
