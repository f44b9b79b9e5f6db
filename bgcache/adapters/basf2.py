"""A basf2 module that overlays PXD beam background drawn from a bgcache pool.

The basf2 adapter, on top of :mod:`bgcache.overlay`: the module hands each simulated event
one pool event (:meth:`~bgcache.overlay.PoolOverlay.next_event`) as Belle II ``PXDDigit``
objects, in place of the PXD digits that BGOverlayInput read from its background files.
It takes the parameters of Belle II's ``PXDBackgroundGenerator`` module (``model``,
``checkpoint``, ``seed``, ``nintra``, ``ninter``, ``globaltag``) plus the pool ones.

basf2 and ROOT are imported only when a module is created (:func:`import_basf2`), so this
module imports anywhere; outside a basf2 installation creating a module raises
:class:`~bgcache.errors.MissingDependencyError`.

What the module does in each basf2 phase:

* ``initialize``: reads the collection extension from the ``BackgroundInfo`` object that
  BGOverlayInput creates (``bkg_info_name``, ``"BackgroundInfo"`` by default; its extension
  is ``"_beamBG"`` by default), registers ``PXDDigits`` + extension with event durability,
  derives the seed (default: from ``basf2.get_random_seed()``), chooses the fill path
  (:func:`~bgcache.adapters._digits.select_filler`, logged with its reason) and checks the
  pool, the model and, if the job may have to generate, the checkpoint (by opening a
  :class:`~bgcache.overlay.PoolOverlay`): a job fails at its start, not hours later;
* ``event``: replaces the collection's content (BGOverlayInput's digits) with the next pool
  event in one call, never a Python loop over hits: a C++ loop compiled by cling takes the
  window's decoded buffers as the overlay's prefetch threads left them and stores the
  digits, with the GIL released (or basf2's ``PyStoreArray.fillArray`` where the release's
  PXDDigit is not the basf2 header's; see :func:`~bgcache.adapters._digits.select_filler`).
  The first event of a process opens its overlay, with prefetch, and the first one with hits
  is read back through PXDDigit's getters;
* ``terminate``: closes the overlay and logs its counters (``B2INFO``).

Parallel processing (``basf2 -p N``): basf2 calls ``initialize`` before it forks the
worker processes. A worker opens its own overlay at its first event, on the sub-share
``job * N + worker`` of ``njobs * N``, so no two workers hand out the same pool event.

Example (a steering file; see docs/basf2.md)::

    import basf2, simulation, background
    from bgcache.adapters.basf2 import inject_overlay

    add_simulation = inject_overlay(simulation.add_simulation, pool="/data/pools/convnet")
    add_simulation(path, bkgfiles=background.get_background_files())

For the SVD overlay, Belle II adds a second BGOverlayInput (``bkgInfoName=
"BackgroundInfoSVDOverlay"``); ``bkg_info_name`` picks the one whose PXD digits are replaced.
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Concatenate, ParamSpec, TypeVar

from bgcache.adapters._digits import FILL_PATHS, Filler, select_filler
from bgcache.draw import check_on_exhausted, check_share, share_bounds, sub_share
from bgcache.errors import (
    BgcacheError,
    MissingDependencyError,
    PoolMismatchError,
    UsageError,
    did_you_mean,
)
from bgcache.overlay import OverlayStats, PoolOverlay
from bgcache.seeding import seed_from_string, validate_seed
from bgcache.store.columns import PackedEvent
from bgcache.store.pool import Pool, open_pool

#: basf2 name of the module.
MODULE_NAME = "PXDBackgroundOverlay"
#: The module is placed right after this one.
ANCHOR_MODULE = "BGOverlayInput"
#: The filled collection is this name + the extension.
DIGITS_NAME = "PXDDigits"
#: Default name of the store object BGOverlayInput creates (persistent durability); its
#: ``bkgInfoName`` parameter names another (the SVD overlay's: "BackgroundInfoSVDOverlay").
BACKGROUND_INFO_NAME = "BackgroundInfo"
#: BGOverlayInput's default extension.
DEFAULT_EXTENSION = "_beamBG"
#: ``ProcHandler.EvtProcID()`` of worker processes is below this (input/output: above).
_FIRST_NON_WORKER_ID = 10000

_P = ParamSpec("_P")
_R = TypeVar("_R")


def import_basf2() -> tuple[Any, Any]:
    """Import basf2 and ROOT, the Belle II framework the module runs in.

    Returns:
        The ``basf2`` and ``ROOT`` modules (``ROOT.Belle2`` holds the Belle II classes).

    Raises:
        MissingDependencyError: basf2 or ROOT cannot be imported (not a basf2 environment).

    Example:
        >>> try:
        ...     basf2, ROOT = import_basf2()
        ... except MissingDependencyError as exc:  # outside a basf2 installation
        ...     assert str(exc).startswith("the basf2 adapter runs inside")
    """
    try:
        basf2 = importlib.import_module("basf2")
        root = importlib.import_module("ROOT")
    except ImportError as exc:
        raise MissingDependencyError(
            "the basf2 adapter runs inside a Belle II basf2 installation: importing basf2 and "
            f"ROOT failed ({exc}). Set up a basf2 release (b2setup <release>) and install "
            "bgcache into its Python; outside basf2, draw events with "
            "bgcache.overlay.PoolOverlay directly"
        ) from exc
    return basf2, root


# -- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OverlayModuleParams:
    """The parameters of the module, checked (see :func:`PXDBackgroundOverlayModule`)."""

    pool: str
    model: str | None = None
    checkpoint: str | None = None
    seed: int | None = None
    nintra: int = 1
    ninter: int = 1
    globaltag: str | None = None
    job: int = 0
    njobs: int = 1
    on_exhausted: str = "generate"
    prefetch: int = 2
    extension: str | None = None
    bkg_info_name: str = BACKGROUND_INFO_NAME
    fill: str = "auto"


#: Names of the module's parameters.
PARAMETERS = tuple(f.name for f in fields(OverlayModuleParams))
_DEFAULTS = {f.name: f.default for f in fields(OverlayModuleParams) if f.name != "pool"}


def parse_params(**params: Any) -> OverlayModuleParams:
    """Check the module's parameters (at steering time, before basf2 runs anything).

    Raises:
        UsageError: an unknown parameter (with the closest known one), no ``pool``, or a
            value of the wrong type or out of range.

    Example:
        >>> parse_params(pool="/pools/p", njobs=4, job=3).njobs
        4
        >>> try:
        ...     parse_params(pool="/pools/p", on_exhaust="reuse")
        ... except UsageError as exc:
        ...     print(exc)
        PXDBackgroundOverlay has no parameter 'on_exhaust' (did you mean 'on_exhausted'?)
    """
    for name in params:
        if name not in PARAMETERS:
            raise UsageError(
                f"{MODULE_NAME} has no parameter {name!r}{did_you_mean(name, PARAMETERS)}"
            )
    params = {**_DEFAULTS, **params}
    pool = params.get("pool")
    if not isinstance(pool, str | os.PathLike) or not os.fspath(pool):
        raise UsageError(
            f"{MODULE_NAME} needs pool=... (a pool directory or store URL), got {pool!r}"
        )
    for name in ("model", "globaltag", "extension", "bkg_info_name", "fill"):
        value = params.get(name)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{MODULE_NAME} parameter {name} must be a string, got {value!r}")
    # BGOverlayInput's bkgInfoName="" means the default name, and so does ours
    params["bkg_info_name"] = params["bkg_info_name"] or BACKGROUND_INFO_NAME
    if params["fill"] not in FILL_PATHS:
        raise UsageError(
            f"{MODULE_NAME} parameter fill must be one of {', '.join(FILL_PATHS)}, "
            f"got {params['fill']!r}{did_you_mean(params['fill'], FILL_PATHS)}"
        )
    checkpoint = params.get("checkpoint")
    if checkpoint is not None:
        if not isinstance(checkpoint, str | os.PathLike):
            raise UsageError(f"{MODULE_NAME} checkpoint must be a path, got {checkpoint!r}")
        params["checkpoint"] = os.path.expandvars(os.fspath(checkpoint))
    if params.get("seed") is not None:
        params["seed"] = validate_seed(params["seed"])
    params["job"], params["njobs"] = check_share(
        params["job"], params["njobs"], prefix=f"{MODULE_NAME} parameter "
    )
    for name, low, high in (
        ("nintra", 1, 1024),
        ("ninter", 1, 1024),
        ("prefetch", 0, 1024),
    ):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UsageError(
                f"{MODULE_NAME} parameter {name} must be an integer in {low}..{high}, got {value!r}"
            )
    check_on_exhausted(params["on_exhausted"], prefix=f"{MODULE_NAME} parameter ")
    params["pool"] = os.fspath(pool)
    return OverlayModuleParams(**params)


def process_share(job: int, njobs: int, worker: int, nworkers: int) -> tuple[int, int]:
    """The (job, njobs) a basf2 worker process draws: its sub-share of job ``job``
    (:func:`bgcache.draw.sub_share`, with basf2's words in the errors).

    Raises:
        UsageError: more than :data:`~bgcache.draw.MAX_JOBS` shares in all.

    Example:
        >>> process_share(1, 4, worker=2, nworkers=8)
        (10, 32)
    """
    if not 0 <= worker < nworkers:
        raise UsageError(f"basf2 worker {worker} is not in 0..{nworkers - 1}")
    return sub_share(job, njobs, worker, nworkers)


def anchor_position(
    modules: Sequence[tuple[str, str]], bkg_info_name: str = BACKGROUND_INFO_NAME
) -> int:
    """Index of the BGOverlayInput that creates ``bkg_info_name``, among a path's modules.

    Args:
        modules: ``(module type, its bkgInfoName)`` of each module in the path, in order
            (:func:`path_modules` reads them off basf2 modules).
        bkg_info_name: the BackgroundInfo object the overlay module reads.

    Raises:
        UsageError: no such module (the message lists the BGOverlayInputs there are).

    Example:
        >>> path = [("EventInfoSetter", ""), ("BGOverlayInput", "BackgroundInfo"),
        ...         ("BGOverlayInput", "BackgroundInfoSVDOverlay"), ("FullSim", "")]
        >>> anchor_position(path), anchor_position(path, "BackgroundInfoSVDOverlay")
        (1, 2)
    """
    for position, (module_type, info_name) in enumerate(modules):
        if module_type == ANCHOR_MODULE and info_name == bkg_info_name:
            return position
    others = [info for kind, info in modules if kind == ANCHOR_MODULE]
    if others:
        raise UsageError(
            f"add_simulation put no {ANCHOR_MODULE} with bkgInfoName={bkg_info_name!r} in the "
            f"path (its {ANCHOR_MODULE} modules create {', '.join(map(repr, others))}): pass "
            "bkg_info_name=... naming the BackgroundInfo of the PXD background files"
        )
    names = [kind for kind, _ in modules]
    raise UsageError(
        f"add_simulation put no {ANCHOR_MODULE} module in the path (modules: "
        f"{', '.join(names) or 'none'}): {MODULE_NAME} replaces the PXD digits that "
        f"{ANCHOR_MODULE} reads, so call it with the beam background files "
        "(bkgfiles=background.get_background_files()) and bkgOverlay=True"
    )


def path_modules(modules: Sequence[Any]) -> list[tuple[str, str]]:
    """``(type, bkgInfoName)`` of basf2 modules, for :func:`anchor_position`.

    The type is ``module.type()`` (the registered name, whatever ``set_name`` made of the
    name); the BackgroundInfo name is the module's ``bkgInfoName`` parameter, its default
    when unset or empty, and the default for releases whose BGOverlayInput has none.
    """
    out = []
    for module in modules:
        module_type, info_name = str(module.type()), ""
        if module_type == ANCHOR_MODULE:
            for param in module.available_params():
                if param.name == "bkgInfoName":
                    info_name = str(param.values)
            info_name = info_name or BACKGROUND_INFO_NAME
        out.append((module_type, info_name))
    return out


# -- the module -------------------------------------------------------------------------------
@dataclass
class FillStats:
    """What this process put into the digits array: events, digits, seconds in the filler."""

    events: int = 0
    digits: int = 0
    seconds: float = 0.0

    def add(self, digits: int, seconds: float) -> None:
        self.events += 1
        self.digits += digits
        self.seconds += seconds

    def summary(self, path: str) -> str:
        """One line for the log.

        Example:
            >>> FillStats(2, 138_000, 0.004).summary("cling")
            'filled 2 events (138000 digits) by cling in 0.004 s (2.0 ms an event)'
        """
        per_event = self.seconds / self.events * 1e3 if self.events else 0.0
        return (
            f"filled {self.events} events ({self.digits} digits) by {path} in "
            f"{self.seconds:.3f} s ({per_event:.1f} ms an event)"
        )


class _OverlayCore:
    """What the basf2 module does, kept out of the class that must derive from basf2.Module.

    ``initialize`` checks everything (pool, model, checkpoint) with an overlay that reads on
    demand, so no thread runs when basf2 forks its worker processes; each process that runs
    ``event`` then opens its own overlay, with prefetch, at its first event.

    Attributes:
        params: the checked parameters.
        seed: the seed in use (after ``initialize``).
        collection: the name of the filled collection (after ``initialize``).
        filler: how the collection is filled (after ``initialize``).
        job, njobs: the share this process draws (a worker's sub-share under ``basf2 -p``).
        overlay: the overlay of this process (None before ``initialize``).
    """

    def __init__(self, params: OverlayModuleParams, basf2: Any, root: Any) -> None:
        self.params = params
        self.basf2 = basf2
        self.root = root
        self.belle2 = root.Belle2
        self.seed: int | None = None
        self.collection: str | None = None
        self.overlay: PoolOverlay | None = None
        self.job, self.njobs = params.job, params.njobs
        self._pool: Pool | None = None
        self._init_pid: int | None = None  # the process that ran initialize
        self._pid: int | None = None  # the process whose overlay self.overlay is
        self._array: Any = None
        self.filler: Filler | None = None
        self.fill_stats = FillStats()
        self._verified = False  # the first event with hits is read back (Filler.verify)

    def _extension(self) -> str:
        """The collection extension: the parameter, else BGOverlayInput's BackgroundInfo."""
        if self.params.extension is not None:
            extension = self.params.extension
        else:
            belle2, name = self.belle2, self.params.bkg_info_name
            info = belle2.PyStoreObj(name, belle2.DataStore.c_Persistent)
            if not info.isValid():
                raise UsageError(
                    f"no {name} in the DataStore: no {ANCHOR_MODULE} creating it is in "
                    f"the path before {MODULE_NAME}: add this module after {ANCHOR_MODULE} "
                    "(use bgcache's inject helper: add_simulation = bgcache.adapters.basf2."
                    "inject_overlay(simulation.add_simulation, pool=...)), pass "
                    f"bkg_info_name=... if that {ANCHOR_MODULE} has another bkgInfoName, or "
                    "extension=... for a path without BGOverlayInput"
                )
            extension = str(info.obj().getExtensionName())
        if not extension:
            raise UsageError(
                f"the extension is empty: {MODULE_NAME} would overwrite the simulated "
                f"{DIGITS_NAME}; give BGOverlayInput (or extension=...) a non-empty one, "
                f"e.g. {DEFAULT_EXTENSION!r}"
            )
        return extension

    def _open_overlay(self, pool: Pool | str, prefetch: int) -> PoolOverlay:
        p = self.params
        assert self.seed is not None
        return PoolOverlay(
            pool,
            seed=self.seed,
            job=self.job,
            njobs=self.njobs,
            on_exhausted=p.on_exhausted,
            prefetch=prefetch,
            checkpoint=p.checkpoint,
            nintra=p.nintra,
            ninter=p.ninter,
            packed=True,  # the filler takes the window's decoded buffers as they are
        )

    def initialize(self) -> None:
        p, basf2, belle2 = self.params, self.basf2, self.belle2
        self.collection = DIGITS_NAME + self._extension()
        filler = select_filler(belle2, self.root, p.fill)
        array = belle2.PyStoreArray(
            belle2.PXDDigit.Class(), self.collection, belle2.DataStore.c_Event
        )
        if not array.registerInDataStore(self.collection, belle2.DataStore.c_DontWriteOut):
            raise UsageError(f"registering {self.collection} in the DataStore failed (see above)")
        self._array, self.filler = array, filler
        if p.seed is None:
            self.seed = seed_from_string(basf2.get_random_seed())
            origin = "derived from basf2.get_random_seed()"
        else:
            self.seed, origin = p.seed, "given"
        if p.globaltag is not None and p.checkpoint is None:
            basf2.B2WARNING(
                f"{MODULE_NAME}: globaltag={p.globaltag!r} is recorded, but bgcache does not "
                "fetch conditions payloads: the checkpoint for on-the-fly generation must be a "
                "local file (checkpoint=..., the path recorded in the pool, or "
                "$BGCACHE_CHECKPOINT)"
            )
        pool = open_pool(p.pool)
        if p.model is not None and p.model != pool.model:
            raise PoolMismatchError(
                f"{MODULE_NAME}: model={p.model!r} was asked for, but pool '{pool.url}' holds "
                f"{pool.model} events: pass the pool of that model, or leave model unset"
            )
        # checks the share and, if it may generate, the checkpoint (sha256): now, not later
        self.overlay = self._open_overlay(pool, prefetch=0)
        self._pool, self._init_pid, self._pid = pool, os.getpid(), None
        start, stop = share_bounds(len(pool), self.job, self.njobs)
        basf2.B2INFO(
            f"{MODULE_NAME}: filling {self.collection} from pool '{pool.url}' ({pool.model}, "
            f"{len(pool)} events), job {self.job} of {self.njobs} ({stop - start} events), "
            f"seed {self.seed} ({origin}), on_exhausted={p.on_exhausted!r}"
        )
        message = f"{MODULE_NAME}: fills {self.collection} by {filler.path} ({filler.reason})"
        if filler.path == "python":
            basf2.B2WARNING(
                f"{message}: a Python loop over hits takes ~100x the time of the bulk paths "
                "(its cost is logged after the first event); a basf2 release with "
                "PyStoreArray.fillArray, or a ROOT whose cling compiles the filler, fills an "
                "event in about a millisecond"
            )
        else:
            basf2.B2INFO(message)

    def _enter_process(self) -> None:
        """Open the overlay of this process (at its first event)."""
        if self._init_pid is None:
            raise UsageError(f"{MODULE_NAME}.event() was called before initialize()")
        pool: Pool | str
        if os.getpid() == self._init_pid:
            pool = self._pool if self._pool is not None else self.params.pool
        else:  # basf2 forked this process after initialize
            pool = self.params.pool
            handler: Any = getattr(self.belle2, "ProcHandler", None)
            worker = -1 if handler is None else int(handler.EvtProcID())
            if handler is not None and 0 <= worker < _FIRST_NON_WORKER_ID:
                nworkers = int(handler.numEventProcesses())
                self.job, self.njobs = process_share(
                    self.params.job, self.params.njobs, worker, nworkers
                )
                self.basf2.B2INFO(
                    f"{MODULE_NAME}: basf2 worker {worker} of {nworkers} draws share "
                    f"{self.job} of {self.njobs}"
                )
        self.overlay = self._open_overlay(pool, prefetch=self.params.prefetch)
        self._pid = os.getpid()

    def event(self) -> None:
        if self._pid != os.getpid():
            self._enter_process()
        assert self.overlay is not None and self.filler is not None
        event = self.overlay.next_packed()
        t0 = time.perf_counter()
        # replaces BGOverlayInput's digits of this event, in one call into C++ (GIL released)
        self.filler(self._array, event)
        n_hits = event.n_hits
        if not self._verified and n_hits:
            self._verify(event)
        seconds = time.perf_counter() - t0
        if self.filler.path == "python" and self.fill_stats.events == 0 and n_hits:
            self.basf2.B2WARNING(
                f"{MODULE_NAME}: the per-hit fill took {seconds:.2f} s for {n_hits} digits "
                f"({seconds / n_hits * 1e6:.1f} us a digit)"
            )
        self.fill_stats.add(n_hits, seconds)

    def _verify(self, event: PackedEvent) -> None:
        """Check the first event with hits filled in this process against the pool event,
        read back through PXDDigit's getters; on a difference, warn and take the fallback
        (and fill the event again with it)."""
        assert self.filler is not None
        self._verified = True
        if self.filler.verify is None:
            return
        problem = self.filler.verify(self._array, event)
        if problem is None:
            return
        assert self.filler.fallback is not None  # every filler that verifies has one
        fallback = self.filler.fallback()
        self.basf2.B2WARNING(
            f"{MODULE_NAME}: the first event filled by {self.filler.path} does not read back "
            f"as the pool event ({problem}): the dictionary's PXDDigit members do not mean "
            f"what the basf2 header's do; fills by {fallback.path} from now on "
            f"({fallback.reason})"
        )
        self.filler = fallback
        fallback(self._array, event)

    def terminate(self) -> None:
        """Close the overlay; log its counters if this process drew events."""
        overlay = self.overlay
        if overlay is None:
            return
        overlay.close()
        if self._pid == os.getpid():
            assert self.filler is not None
            self.basf2.B2INFO(
                f"{MODULE_NAME} (share {self.job} of {self.njobs}): {overlay.stats.summary()}; "
                f"{self.fill_stats.summary(self.filler.path)}"
            )


_class_cache: list[tuple[Any, type]] = []


def _module_class() -> type:
    """The basf2.Module subclass, made once per basf2 (basf2 is imported here, not earlier)."""
    basf2, root = import_basf2()
    if _class_cache and _class_cache[0][0] is basf2:
        return _class_cache[0][1]

    class PXDBackgroundOverlay(basf2.Module):  # type: ignore[misc,name-defined]
        """Overlays PXD background from a bgcache pool (:func:`PXDBackgroundOverlayModule`)."""

        def __init__(self, params: OverlayModuleParams) -> None:
            super().__init__()
            self.set_name(MODULE_NAME)
            flags = basf2.ModulePropFlags
            # workers draw their own sub-shares; each logs its counters at terminate
            self.set_property_flags(
                flags.PARALLELPROCESSINGCERTIFIED | flags.TERMINATEINALLPROCESSES
            )
            self.params = params
            # recorded under the names of Belle II's PXDBackgroundGenerator module
            self.model, self.checkpoint, self.seed = params.model, params.checkpoint, params.seed
            self.nintra, self.ninter, self.globaltag = (
                params.nintra,
                params.ninter,
                params.globaltag,
            )
            self.core = _OverlayCore(params, basf2, root)

        @property
        def overlay(self) -> PoolOverlay | None:
            """This process's overlay (after ``initialize``)."""
            return self.core.overlay

        @property
        def stats(self) -> OverlayStats | None:
            """The overlay's counters (after ``initialize``)."""
            return None if self.core.overlay is None else self.core.overlay.stats

        def initialize(self) -> None:
            try:
                self.core.initialize()
            except BgcacheError as exc:
                basf2.B2ERROR(str(exc))
                raise

        def event(self) -> None:
            self.core.event()

        def terminate(self) -> None:
            self.core.terminate()

    _class_cache[:] = [(basf2, PXDBackgroundOverlay)]
    return PXDBackgroundOverlay


def PXDBackgroundOverlayModule(
    pool: str | os.PathLike[str],
    *,
    model: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    nintra: int = 1,
    ninter: int = 1,
    globaltag: str | None = None,
    job: int = 0,
    njobs: int = 1,
    on_exhausted: str = "generate",
    prefetch: int = 2,
    extension: str | None = None,
    bkg_info_name: str = BACKGROUND_INFO_NAME,
    fill: str = "auto",
) -> Any:
    """A basf2 module that fills ``PXDDigits`` + extension with background from a pool.

    Place it right after BGOverlayInput (:func:`inject_overlay` does).

    Args:
        pool: the pool (directory or store URL).
        model: the generator the pool must hold (None: whatever it holds); another model is
            an error at ``initialize``.
        checkpoint: checkpoint for on-the-fly generation when the share runs out
            (None: the path the pool records, else ``$BGCACHE_CHECKPOINT``); its sha256 is
            checked against the pool at ``initialize``. ``$VARIABLES`` are expanded.
        seed: int64 seed of the draw (start in the share, fallback keys); None: derived from
            ``basf2.get_random_seed()`` as Belle II does
            (:func:`~bgcache.seeding.seed_from_string`).
        nintra, ninter: threads of on-the-fly generation.
        globaltag: recorded only; bgcache does not fetch payloads (a warning says so when no
            checkpoint is given).
        job, njobs: this job's share of the pool (grid jobs: ``njobs`` = number of jobs).
        on_exhausted: ``"generate"``, ``"reuse"`` or ``"error"`` when the share is used up.
        prefetch: blocks decoded ahead in a background thread.
        extension: collection extension (None: from BGOverlayInput's ``BackgroundInfo``).
        bkg_info_name: the BackgroundInfo object to read the extension from: the
            ``bkgInfoName`` of the BGOverlayInput whose PXD digits are replaced (``""`` is
            the default name, as in basf2).
        fill: how digits go into the array: ``"auto"`` (the fastest path correct on the
            release: the filler compiled by cling storing the members, else
            ``PyStoreArray.fillArray``, else cling constructing each digit, else a per-hit
            loop), or one of ``"fillArray"``, ``"cling"``, ``"python"`` (a per-hit loop,
            ~100x slower) to force one.

    Returns:
        A ``basf2.Module`` instance named ``PXDBackgroundOverlay``.

    Raises:
        UsageError: a parameter is invalid (at once, not at ``initialize``).
        MissingDependencyError: not in a basf2 installation.
    """
    params = parse_params(
        pool=pool,
        model=model,
        checkpoint=checkpoint,
        seed=seed,
        nintra=nintra,
        ninter=ninter,
        globaltag=globaltag,
        job=job,
        njobs=njobs,
        on_exhausted=on_exhausted,
        prefetch=prefetch,
        extension=extension,
        bkg_info_name=bkg_info_name,
        fill=fill,
    )
    return _module_class()(params)


def inject_overlay(
    add_simulation: Callable[Concatenate[Any, _P], _R], **module_params: Any
) -> Callable[Concatenate[Any, _P], _R]:
    """A drop-in replacement of ``add_simulation`` that adds the overlay module.

    Like Belle II's ``inject_simulation``: the returned function runs ``add_simulation``
    on a new ``basf2.Path``, then adds its modules to the given path in order, with a
    :func:`PXDBackgroundOverlayModule` right after the BGOverlayInput that creates the
    module's ``bkg_info_name`` (the PXD background's, where the SVD overlay adds another).

    Args:
        add_simulation: ``simulation.add_simulation`` (or a function like it).
        **module_params: the module's parameters (``pool`` at least), checked now.

    Returns:
        A function with the signature of ``add_simulation``.

    Raises:
        UsageError: a parameter is invalid (now), or ``add_simulation`` added no
            BGOverlayInput (when called; nothing is added to the path then).
    """
    bkg_info_name = parse_params(**module_params).bkg_info_name

    @functools.wraps(add_simulation)
    def injected(path: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        basf2, _ = import_basf2()
        staging = basf2.Path()
        result = add_simulation(staging, *args, **kwargs)
        modules = list(staging.modules())
        position = anchor_position(path_modules(modules), bkg_info_name)
        modules.insert(position + 1, PXDBackgroundOverlayModule(**module_params))
        for module in modules:
            path.add_module(module)
        return result

    return injected


__all__ = [
    "ANCHOR_MODULE",
    "BACKGROUND_INFO_NAME",
    "DEFAULT_EXTENSION",
    "DIGITS_NAME",
    "MODULE_NAME",
    "PARAMETERS",
    "FillStats",
    "OverlayModuleParams",
    "PXDBackgroundOverlayModule",
    "anchor_position",
    "import_basf2",
    "inject_overlay",
    "parse_params",
    "path_modules",
    "process_share",
]
