"""Run a bgcache command line, or an overlay pass, in a process of its own (for
``tests/test_faults.py``, which starts it as another user or without root's capabilities).

Usage: ``python tests/fault_user.py cli ARGS...`` or ``python tests/fault_user.py overlay
POOL``; ``overlay`` prints how many events one job's pass over the whole pool handed out.
"""

from __future__ import annotations

import sys

from bgcache.cli import app
from bgcache.overlay import PoolOverlay
from bgcache.store import open_pool


def main(mode: str, args: list[str]) -> None:
    if mode == "overlay":
        pool = open_pool(args[0])
        with PoolOverlay(pool, on_exhausted="error", on_corrupt="raise") as overlay:
            print(sum(1 for _ in range(len(pool)) if overlay.next_event() is not None))
        return
    app(args, prog_name="bgcache")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
