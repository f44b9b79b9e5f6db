"""``--config FILE``: a TOML config file as defaults of a command's options.

One precedence for every command that takes ``--config``: the command line, then
environment variables (``BGCACHE_<OPTION>``), then the config file, then the defaults
written in the command. It is click's own order of parameter sources (COMMANDLINE,
ENVIRONMENT, DEFAULT_MAP, DEFAULT): the eager ``--config`` option is processed before the
other options, and its callback reads the file with :func:`bgcache.config.load_config` and
puts its values into the context's ``default_map``, over any default_map already there. So
a value from the file goes through the same type conversion and range checks as the same
value on the command line, and a file can give a required option (``model``).

A command takes config files by declaring one parameter ``config: ConfigOption = None``;
its option names and the types of its parameters (from the function's annotations) are the
keys the file may set. A later command (``bgcache build``) reuses this unchanged.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any

import typer

#: Environment variable naming a config file (``--config`` wins over it).
CONFIG_ENVVAR = "BGCACHE_CONFIG"
#: Key of ``ctx.meta`` where the callback records the file and the options it set.
_META_KEY = "bgcache.config"
#: Parameter types a config file can set.
_CONFIG_TYPES = (bool, int, float, str, Path)


def config_keys(command: Any) -> dict[str, tuple[str, type]]:
    """The keys a config file may set for a click command: ``{key: (parameter, type)}``.

    Keys are the long option names with ``_`` (``--first-index`` -> ``first_index``);
    ``--config`` itself, arguments and options of other types are left out.

    Args:
        command: the click command (``ctx.command``); typed ``Any`` because typer vendors
            click in recent releases, so the class differs between versions.

    Example:
        >>> import typer.main
        >>> from bgcache.cli import app
        >>> keys = config_keys(typer.main.get_command(app).commands["generate"])
        >>> keys["first_index"], keys["json"]
        (('first_index', <class 'int'>), ('json_output', <class 'bool'>))
    """
    callback = command.callback
    hints = typing.get_type_hints(inspect.unwrap(callback)) if callback is not None else {}
    keys: dict[str, tuple[str, type]] = {}
    for param in command.params:
        if getattr(param, "param_type_name", None) != "option" or param.name == "config":
            continue
        long = [opt for opt in param.opts if opt.startswith("--")]
        annotation = _plain_type(hints.get(param.name))
        if long and annotation is not None:
            keys[long[0][2:].replace("-", "_")] = (param.name, annotation)
    return keys


def _plain_type(annotation: Any) -> type | None:
    """``int`` for ``int``, ``Path`` for ``Path | None``; None for other annotations."""
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not NoneType]
        annotation = args[0] if len(args) == 1 else None
    return annotation if annotation in _CONFIG_TYPES else None


def _apply_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """Callback of ``--config``: load the file and make its values the context's defaults."""
    if value is None or ctx.resilient_parsing:
        return value
    from bgcache.config import load_config

    keys = config_keys(ctx.command)
    name = ctx.info_name or ctx.command.name or ""
    values = load_config(
        value,
        command=name,
        known={key: kind for key, (_, kind) in keys.items()},
        commands=_config_commands(ctx) or [name],
    )
    defaults = {keys[key][0]: v for key, v in values.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_META_KEY] = (value, frozenset(defaults))
    return value


def _config_commands(ctx: typer.Context) -> list[str]:
    """Names of the commands beside ``ctx``'s (itself included) that take ``--config``."""
    group: Any = ctx.parent.command if ctx.parent is not None else None
    if group is None or not hasattr(group, "list_commands"):
        return []
    names: list[str] = []
    for name in group.list_commands(ctx.parent):
        command = group.get_command(ctx.parent, name)
        if command is not None and any(p.name == "config" for p in command.params):
            names.append(name)
    return names


def config_origin(ctx: Any, name: str | None) -> Path | None:
    """The config file that gave parameter ``name`` its value, or None.

    Used by the error boundary to say where a bad value came from: the parameter's source
    (``ctx.get_parameter_source``) is the default_map, and ``--config`` put it there.
    """
    if ctx is None or name is None:
        return None
    record = ctx.meta.get(_META_KEY)
    source = ctx.get_parameter_source(name)
    if record is None or source is None or source.name != "DEFAULT_MAP":
        return None
    path, names = record
    return Path(path) if name in names else None


#: The ``--config FILE`` option: declare ``config: ConfigOption = None`` in a command.
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=CONFIG_ENVVAR,
        is_eager=True,
        callback=_apply_config,
        metavar="FILE",
        show_default=False,
        help=(
            "TOML file of option values: long option names as keys; a table named "
            "after the command overrides top-level keys. The command line and "
            "environment variables win over it."
        ),
    ),
]
