"""Builds on a Dask cluster: each block of a build is one task.

Beside :mod:`bgcache.build` (which calls :func:`build_on_dask` for ``scheduler=...``).
A task generates one block, compresses it and writes it straight into the pool from the
worker — several writers of disjoint blocks are safe without a lock (``docs/format.md``) —
so only small results travel back to the client. Each worker process loads the model once
and keeps it for all the tasks it runs (a module-level cache keyed by pool and options).
Dask retries a failed task (``retries``) and moves the tasks of a worker that died to the
others; a block a dead worker left half-written has no marker, and its task rewrites it.
Whatever still fails leaves complete blocks in place: the same build run again completes
only what is missing.

dask.distributed is an optional dependency (``pip install 'bgcache[dask]'``), imported
only here.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from bgcache.errors import BgcacheError, MissingDependencyError, SchedulerError, UsageError

if TYPE_CHECKING:
    from bgcache.block_tasks import BlockTask, BuildRun

#: Times Dask reruns a failed block task before the build gives up.
RETRIES = 3
#: Seconds to wait for the scheduler to answer.
CONNECT_TIMEOUT = 30

_STATE: dict[str, Any] = {}


def import_distributed() -> Any:
    """Import ``dask.distributed`` or raise :class:`MissingDependencyError` with a hint."""
    try:
        import dask.distributed
    except ImportError:
        raise MissingDependencyError(
            "building on a Dask cluster needs dask.distributed, which is not installed: "
            "pip install 'bgcache[dask]' (or build with --workers N on one machine)"
        ) from None
    return dask.distributed


def dask_block(
    url: str, options: dict[str, Any], task: BlockTask, batch: int
) -> tuple[int, int, float, float]:
    """The task run on a worker: one block, generated and written into the pool."""
    from bgcache.block_tasks import load_generator, open_writer, write_task

    key = json.dumps([url, options], sort_keys=True)
    if _STATE.get("key") != key:
        _STATE.clear()
        gen = load_generator(options)
        _STATE.update(key=key, gen=gen, pool=open_writer(url))
    return write_task(_STATE["gen"], _STATE["pool"], task, batch)


#: Address schemes of Dask schedulers (``host:port`` alone means tcp).
SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")


def check_address(address: str) -> str:
    """Check the form of a scheduler address (``tcp://HOST:PORT``) without importing dask.

    Raises:
        UsageError: not ``SCHEME://HOST:PORT`` (or ``HOST:PORT``) with a known scheme.

    Example:
        >>> check_address("tcp://head-node:8786")
        'tcp://head-node:8786'
        >>> check_address("head-node")
        Traceback (most recent call last):
        ...
        bgcache.errors.UsageError: scheduler address 'head-node' is not of the form tcp://HOST:PORT (e.g. tcp://head-node:8786)
    """
    text = str(address).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    ok = scheme in SCHEMES and bool(rest)
    if ok and scheme != "inproc":
        host, colon, port = rest.rpartition(":")
        ok = bool(colon and host and port.isdigit() and 0 < int(port) < 65536)
    if not ok:
        raise UsageError(
            f"scheduler address {address!r} is not of the form tcp://HOST:PORT "
            "(e.g. tcp://head-node:8786)"
        )
    return text


def connect(scheduler: str) -> Any:
    """A Dask client of the scheduler at ``scheduler`` (``tcp://host:port``).

    Raises:
        SchedulerError: nothing answers there within :data:`CONNECT_TIMEOUT` seconds.
    """
    distributed = import_distributed()
    try:
        return distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(
            f"cannot connect to the Dask scheduler at {scheduler!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}): start one with "
            "'dask scheduler', or leave --scheduler out to build on this machine"
        ) from None


def build_on_dask(run: BuildRun, client: Any) -> None:
    """Run the blocks of ``run`` as tasks on the cluster of ``client`` (see :func:`connect`),
    count them in ``run``, and close the client.

    Raises:
        SchedulerError: a task failed after its retries (complete blocks stay; run the
            build again to complete the rest).
    """
    distributed = import_distributed()
    tag = uuid.uuid4().hex[:8]
    try:
        futures = [
            client.submit(
                dask_block,
                run.url,
                run.options,
                task,
                run.batch,
                key=f"bgcache-block-{task.seed}-{task.block}-{tag}",
                pure=False,
                retries=RETRIES,
            )
            for task in run.todo
        ]
        for future in distributed.as_completed(futures, loop=client.loop):
            try:
                n, nbytes, gen_s, write_s = future.result()
            except BgcacheError:  # e.g. a full disk: the same one-line error as locally
                client.cancel(futures)
                raise
            except Exception as exc:
                client.cancel(futures)
                raise SchedulerError(
                    f"a block task failed on the Dask cluster after {RETRIES} retries "
                    f"({type(exc).__name__}: {exc}); complete blocks are kept: run the same "
                    "build again to complete the rest"
                ) from None
            run.count(n, nbytes, gen_s, write_s)
    finally:
        client.close()


__all__ = [
    "CONNECT_TIMEOUT",
    "RETRIES",
    "build_on_dask",
    "connect",
    "dask_block",
    "import_distributed",
]
