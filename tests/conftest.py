"""Shared fixtures: an in-process runner of the ``bgcache`` command line."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from typer.testing import CliRunner, Result

from bgcache.cli import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    """Run ``bgcache ARGS...`` in process; returns typer's ``Result`` (stdout, stderr, exit_code).

    Example: ``result = cli("generate", "--model", "synthetic", "-n", "2")``.
    """
    runner = CliRunner()

    def invoke(*args: str | Sequence[str]) -> Result:
        argv = [a for arg in args for a in ([arg] if isinstance(arg, str) else arg)]
        return runner.invoke(app, argv, prog_name="bgcache")

    return invoke
