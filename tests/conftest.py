"""Shared fixtures: an in-process runner of the ``bgcache`` command line."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest
from typer.testing import CliRunner, Result

from bgcache.cli import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``bgcache ARGS...`` in process; returns typer's ``Result`` (stdout, stderr, exit_code).

    ``BGCACHE_*`` environment variables of the caller's shell are removed (they set option
    values); a test sets its own with ``monkeypatch.setenv``.

    Example: ``result = cli("generate", "--model", "synthetic", "-n", "2")``.
    """
    for name in [n for n in os.environ if n.startswith("BGCACHE_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()

    def invoke(*args: str | Sequence[str]) -> Result:
        argv = [a for arg in args for a in ([arg] if isinstance(arg, str) else arg)]
        return runner.invoke(app, argv, prog_name="bgcache")

    return invoke


@pytest.fixture
def pool_files() -> Callable[[object], dict[str, bytes]]:
    """``pool_files(root)``: every column object of a pool (chunks, shards and their array
    metadata) by path. Markers and the root record hold times and writer ids, so they are
    left out: all else must be byte-identical between two builds of the same keys."""
    from pathlib import Path

    def files(root: object) -> dict[str, bytes]:
        base = Path(str(root))
        out = {}
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and len(rel.split("/")) > 4 and not rel.endswith(".partial"):
                out[rel] = path.read_bytes()
        return out

    return files
