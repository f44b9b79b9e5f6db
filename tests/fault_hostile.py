"""Read a pool through the Python API in a process of its own (for
``tests/test_hostile_pools.py``, which measures its peak memory and time).

Usage: ``python tests/fault_hostile.py measure [--limit-as BYTES] REPORT CMD...`` runs CMD
(under that address-space limit, where given) and writes its peak memory to REPORT (see
:func:`measure`; tests call it through :func:`run_measured`, also ``tests/test_import.py``);
``python tests/fault_hostile.py POOL`` opens the pool, reads every block (noting the
damaged ones), describes it and draws every event with an overlay that skips damaged
blocks. Exit 0 if all of it worked; exit 1 with one line ``ErrorClass: message`` on stderr
if bgcache refused the pool with one of its errors (any other exception ends in a
traceback, which the test rejects).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bgcache.errors import BgcacheError, CorruptBlockError
from bgcache.overlay import PoolOverlay
from bgcache.store import open_pool


def main(location: str) -> int:
    try:
        pool = open_pool(location)
        damaged = []
        for info in pool.block_list:
            try:
                pool.read_block(info)
            except CorruptBlockError as exc:
                damaged.append(exc)
        pool.describe()
        with PoolOverlay(pool, on_corrupt="skip", on_exhausted="reuse") as overlay:
            for _ in range(len(pool)):
                overlay.next_event()
        if damaged:
            raise damaged[0]
    except BgcacheError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def measure(report: str, argv: list[str]) -> int:
    """Run ``argv`` as a child of this small process and write the child's peak resident
    memory (kB, ``wait4``) to ``report``; exit with its exit code. A process forked from a
    big one (pytest with torch loaded) inherits that one's high-water mark, so the test
    measures through this process instead."""
    import os
    import subprocess

    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    with open(report, "w") as out:  # noqa: PTH123 (a plain file for the test to read)
        out.write(str(usage.ru_maxrss))
    return os.waitstatus_to_exitcode(status)


def run_measured(
    argv: list[str], *, limit_as: int, seconds: float
) -> tuple[int, str, float, float]:
    """Exit code, output (stdout and stderr), peak MiB and seconds of one command, run as the
    child of this small measuring process (:func:`measure`) in a session of its own, under an
    address-space limit of ``limit_as`` bytes; a command still running after ``seconds`` is
    killed and fails the test (a hang)."""
    import os
    import signal
    import subprocess
    import tempfile
    import time

    import pytest

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as out:
        report = Path(tmp) / "peak"
        proc = subprocess.Popen(
            [sys.executable, __file__, "measure", "--limit-as", str(limit_as), str(report), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.seek(0)
            pytest.fail(f"{argv[2:]} still ran after {seconds} s (a hang): {out.read()[-300:]}")
        out.seek(0)
        text = out.read()
        peak_kb = int(report.read_text())
    return code, text, peak_kb / 1024, time.monotonic() - t0


if __name__ == "__main__":
    if sys.argv[1] == "measure":
        args = sys.argv[2:]
        if args[0] == "--limit-as":  # set here, not in a preexec_fn of a threaded parent
            import resource

            limit = int(args[1])
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            args = args[2:]
        raise SystemExit(measure(args[0], args[1:]))
    raise SystemExit(main(sys.argv[1]))
