"""The typer app, its single error boundary and ``bgcache --version``.

Exit codes (the one place where exceptions become exit codes):

* 0: success.
* 1: a :class:`~bgcache.errors.BgcacheError` (missing file, unreadable or mismatching
  checkpoint, missing optional dependency...): one line ``bgcache: error: ...`` on stderr.
* 2: a usage mistake: :class:`~bgcache.errors.UsageError` (a bad config file,
  :class:`~bgcache.errors.ConfigError`, included), an unknown model name
  (:class:`~bgcache.errors.UnknownModelError`) or a command-line parsing error (unknown
  option, missing option, value of the wrong type or out of range). A bad value that came
  from a config file names the file.
* 130: interrupted (Ctrl-C).

Anything else is a bug and keeps its traceback (without locals: they can be huge tensors).

This module imports nothing heavy: command modules import the library inside their
functions, so ``bgcache --version`` and ``bgcache --help`` never import torch or zarr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from bgcache._version import __version__
from bgcache.cli import (
    build_cmd,
    checkpoint_cmd,
    compare_cmd,
    fidelity_cmd,
    gc_cmd,
    generate_cmd,
    import_cmd,
    inspect_cmd,
    models_cmd,
    plan_cmd,
    recompress_cmd,
    verify_cmd,
)
from bgcache.cli._config import config_origin
from bgcache.errors import BgcacheError, UnknownModelError, UsageError

#: Exit code of a bgcache error (not a usage mistake).
EXIT_ERROR = 1
#: Exit code of a usage mistake (bad option value, unknown option, missing option).
EXIT_USAGE = 2
#: Exit code after Ctrl-C.
EXIT_INTERRUPTED = 130


def _click_class(name: str) -> type[Exception]:
    """A click exception class, found through the public ``typer.BadParameter``.

    Recent typer releases vendor click (``typer._click``), older ones depend on it; both
    derive ``BadParameter`` from click's ``UsageError`` and ``ClickException``.
    """
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name and issubclass(cls, Exception):
            return cls
    raise RuntimeError(f"typer.BadParameter does not derive from click's {name}")


#: bgcache errors that are usage mistakes: a bad value or an unknown name given by the user.
_USAGE_ERRORS = (UsageError, UnknownModelError)
_ClickException = _click_class("ClickException")
_ClickUsageError = _click_class("UsageError")


def one_line(text: str) -> str:
    """Collapse a message to one line (errors are always printed on one line).

    Example:
        >>> one_line("checkpoint 'x.pt' is truncated\\n  copy it again")
        "checkpoint 'x.pt' is truncated copy it again"
    """
    return " ".join(str(text).split())


def _error(message: str) -> None:
    print(f"bgcache: error: {one_line(message)}", file=sys.stderr, flush=True)


def interrupted(hint: str = "") -> typer.Exit:
    """What a command raises after catching Ctrl-C itself: one line ``bgcache: error:
    interrupted[: hint]`` on stderr (also with ``--quiet``), and exit code 130."""
    _error("interrupted" + (f": {hint}" if hint else ""))
    return typer.Exit(EXIT_INTERRUPTED)


def _report(exc: BaseException) -> int:
    """Print one error line for a user-facing exception and return its exit code.

    Raises:
        BaseException: ``exc`` itself when it is not a user-facing error (a bug).
    """
    if isinstance(exc, BgcacheError):
        _error(str(exc))
        return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_ERROR
    click_exc: Any = exc  # click's exceptions, reached without importing click
    if isinstance(exc, _ClickUsageError):
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `bgcache`: help, click's code
            text = click_exc.format_message()
            if text:
                print(text)
            return int(getattr(exc, "exit_code", EXIT_USAGE))
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        origin = config_origin(ctx, getattr(getattr(exc, "param", None), "name", None))
        if ctx is not None and origin is not None:  # a bad value from --config: name the file
            hint = f" (value from config file '{origin}'; see '{ctx.command_path} --help')"
        _error(click_exc.format_message() + hint)
        return EXIT_USAGE
    if isinstance(exc, _ClickException):
        _error(click_exc.format_message())
        return int(getattr(exc, "exit_code", EXIT_ERROR))
    if isinstance(exc, typer.Abort):
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            _error("interrupted")
            return EXIT_INTERRUPTED
        _error("aborted")
        return EXIT_ERROR
    raise exc


class BgcacheGroup(TyperGroup):
    """The root command group: runs click in non-standalone mode and owns the exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode exit with the codes in the module doc."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except (BgcacheError, _ClickException, typer.Abort) as exc:
            sys.exit(_report(exc))
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="bgcache",
    cls=BgcacheGroup,
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"bgcache {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the bgcache version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Pools of pre-generated GAN beam-background events for Belle II PXD simulation.

    GAN models (convnet, resnet, ieagan) need torch and a checkpoint; the
    synthetic generator needs neither and is NOT a physics model. Errors are
    one line on stderr: exit code 1 for an error, 2 for a usage mistake.

    [bold]Examples[/bold]

        bgcache build demo-pool --config configs/demo.toml
        bgcache inspect demo-pool
        bgcache verify demo-pool
        bgcache models
        bgcache generate --model synthetic --events 200
        bgcache checkpoint init --model convnet -o demo.pt
        bgcache checkpoint info demo.pt
        bgcache generate --model convnet --checkpoint demo.pt --events 3
    """


app.command("build")(build_cmd.build)
app.command("inspect")(inspect_cmd.inspect_pool)
app.command("verify")(verify_cmd.verify)
app.command("gc")(gc_cmd.gc)
app.command("recompress")(recompress_cmd.recompress)
app.command("import")(import_cmd.import_files)
app.command("compare")(compare_cmd.compare)
app.command("fidelity")(fidelity_cmd.fidelity)
app.command("plan")(plan_cmd.plan)
app.command("models")(models_cmd.models)
app.command("generate")(generate_cmd.generate)
app.add_typer(checkpoint_cmd.checkpoint_app, name="checkpoint")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``bgcache`` script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    app(args=list(argv) if argv is not None else None, prog_name="bgcache")
