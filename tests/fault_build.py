"""Run ``bgcache build`` (the real command line) and SIGKILL it at a chosen step.

A test-only wrapper for ``tests/test_faults.py``; nothing in bgcache knows about it. It
imports bgcache once, then for each entry of a plan forks a child that patches one
method (the patch is the only difference from a plain ``bgcache build``), runs the
command line and kills itself with SIGKILL at the N-th call of that method. The parent
records how each child ended.

Usage: ``python tests/fault_build.py PLAN.json RESULTS.json`` where the plan is a list of
``{"argv": [...], "target": ..., "when": ..., "nth": N, "match": REGEX}``:

* ``target``: ``generate`` (the synthetic generator's ``events``), ``encode_chunk`` /
  ``encode_shard`` (compression of a column), or a ``LocalStorage`` method: ``write``,
  ``write_new``, ``_write_tmp``, ``sync_dir``;
* ``when``: ``before`` the call, ``after`` it returned, ``after_tmp`` (``write`` and
  ``write_new``: the ``.partial`` file is written and fsynced, not yet renamed or linked)
  or ``torn`` (``write``/``write_new``: half of the bytes are in the ``.partial`` file);
* ``match``: only calls whose store key matches this regular expression count.

The results are ``[{"signal": 9 | null, "code": int | null}, ...]``; a child that was not
killed ran the command to its end (the test treats that as a plan that missed its step).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import bgcache.store.writer as writer_module
from bgcache.cli import app
from bgcache.models.synthetic import SyntheticGenerator
from bgcache.store.format import PARTIAL_SUFFIX
from bgcache.store.storage import LocalStorage


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(step: dict[str, Any]) -> None:
    target, when, nth = step["target"], step.get("when", "before"), int(step.get("nth", 1))
    pattern = re.compile(step["match"]) if step.get("match") else None
    calls = [0]

    def counts(key: str | None) -> bool:
        if pattern is not None and (key is None or not pattern.search(key)):
            return False
        calls[0] += 1
        return calls[0] == nth

    if target == "generate":
        real_events = SyntheticGenerator.events

        def events(self: Any, keys: Any) -> Any:
            if counts(None) and when == "before":
                _die()
            out = real_events(self, keys)
            if calls[0] == nth and when == "after":
                _die()
            return out

        SyntheticGenerator.events = events  # type: ignore[method-assign]
        return
    if target in ("encode_chunk", "encode_shard"):
        real_encode = getattr(writer_module, target)

        def encode(*args: Any, **kwargs: Any) -> Any:
            if counts(None) and when == "before":
                _die()
            out = real_encode(*args, **kwargs)
            if calls[0] == nth and when == "after":
                _die()
            return out

        setattr(writer_module, target, encode)
        return
    real = getattr(LocalStorage, target)

    def key_of(self: LocalStorage, arg: Any) -> str:
        if target == "_write_tmp":
            return Path(arg).relative_to(self.root).as_posix()
        return str(arg)

    def patched(self: LocalStorage, arg: Any, *rest: Any) -> Any:
        hit = counts(key_of(self, arg))
        if hit and when == "before":
            _die()
        if hit and when in ("after_tmp", "torn"):
            data = rest[0]
            path = self.root / str(arg)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
            tmp.write_bytes(data if when == "after_tmp" else data[: len(data) // 2])
            if when == "after_tmp":
                fd = os.open(tmp, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            _die()
        out = real(self, arg, *rest)
        if hit and when == "after":
            _die()
        return out

    setattr(LocalStorage, target, patched)


def _run(step: dict[str, Any]) -> None:
    """In the child: patch, run the command line, exit with its code."""
    code = 3
    try:
        _install(step)
        try:
            app(step["argv"], prog_name="bgcache")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(plan_path: str, results_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    results = []
    for step in plan:
        pid = os.fork()
        if pid == 0:
            _run(step)
        _, status = os.waitpid(pid, 0)
        results.append(
            {
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            }
        )
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
