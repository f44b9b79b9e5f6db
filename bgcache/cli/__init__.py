"""The ``bgcache`` command line (typer).

The top layer of the package: each command module parses options, calls the library and
prints. Errors become exit codes only here (see :mod:`bgcache.cli._app`).

Example:
    >>> from typer.testing import CliRunner
    >>> from bgcache.cli import app
    >>> CliRunner().invoke(app, ["--version"]).stdout.startswith("bgcache ")
    True
"""

from __future__ import annotations

from bgcache.cli._app import app, main

__all__ = ["app", "main"]
