"""A reader process for ``tests/test_faults.py``: reads a pool over and over while other
processes write to it, and records every error or wrong event.

Usage: ``python tests/fault_reader.py POOL STOP_FILE OUT.json pool|overlay SEED``: reads
until STOP_FILE exists (touching ``OUT.json.ready`` once it runs), then writes
``{"reads": n, "opens": n, "sizes": [pool sizes seen], "errors": [...]}`` to OUT.json. Events are
compared with the synthetic generator's events of their keys.
"""

from __future__ import annotations

import json
import random
import sys
import traceback
from pathlib import Path

import bgcache
from bgcache.overlay import PoolOverlay
from bgcache.store import open_pool


def main(pool: str, stop: str, out: str, mode: str, seed: int) -> None:
    gen = bgcache.load_model("synthetic")
    rng = random.Random(seed)
    reads = opens = 0
    sizes: set[int] = set()
    errors: list[str] = []
    Path(out + ".ready").touch()
    while not Path(stop).exists() and len(errors) < 5:
        try:
            opened = open_pool(pool)
            opens += 1
            n = len(opened)
            sizes.add(n)
            if mode == "overlay":
                with PoolOverlay(
                    opened, seed=rng.randrange(1000), on_exhausted="error", prefetch=2
                ) as overlay:
                    for _ in range(min(n, 24)):
                        event = overlay.next_event()
                        assert overlay.last is not None
                        key = overlay.last[1]
                        if event != gen.event(key):
                            errors.append(f"overlay: wrong event for key {key}")
                        reads += 1
                continue
            for _ in range(4):
                opened.refresh()  # see blocks completed since the open
                sizes.add(len(opened))
                info = opened.block_list[rng.randrange(len(opened.block_list))]
                events = opened.read_block(info)
                want = gen.events([(info.seed, info.first_index + i) for i in range(len(events))])
                if events != want or len(events) != info.n_events:
                    errors.append(f"pool: wrong events in block {info.path}")
                position = rng.randrange(len(opened))
                if opened.event(position) != gen.event(opened.key(position)):
                    errors.append(f"pool: wrong event at position {position}")
                reads += len(events) + 1
        except Exception:
            errors.append(traceback.format_exc())
    stats = {"reads": reads, "opens": opens, "sizes": sorted(sizes), "errors": errors}
    Path(out).write_text(json.dumps(stats))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
