"""Config files: TOML files that hold the options of bgcache commands.

A config file stands for command-line options; the command line turns it into option
values (``--config FILE``, see :mod:`bgcache.cli._config`), where options given on the
command line or as environment variables win over it. This module only reads and checks
files: it knows nothing of typer or click.

Format:

* Keys are the long option names of a command, written with ``-`` or ``_``
  (``first-index`` and ``first_index`` are the same key).
* Top-level keys apply to every command that reads the file.
* A table named after the command (``[generate]``, ``[build]``) holds that command's
  options and overrides the top-level keys for it. Tables of other commands are ignored,
  so one file can serve several commands; given the list of commands, a table named
  after none of them (a mistyped ``[generat]``) is an error.
* Relative paths are relative to the directory of the config file.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp, "demo.toml")
    ...     _ = path.write_text('model = "synthetic"\\nseed = 1\\n[generate]\\nseed = 2\\n')
    ...     load_config(path, command="generate", known={"model": str, "seed": int})
    {'model': 'synthetic', 'seed': 2}
"""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path, PurePath
from typing import Any, TypeAlias

from bgcache.errors import ConfigError, ConfigNotFoundError, did_you_mean

#: The type(s) a config key accepts: ``str``, ``int``, ``float``, ``bool``, ``Path``...
KeyType: TypeAlias = type | tuple[type, ...]

__all__ = ["KeyType", "load_config", "normalize_key", "parse_config"]


#: Largest config file read (a config is a few dozen lines).
MAX_CONFIG_BYTES = 2**20


def normalize_key(key: str) -> str:
    """The Python name of a config key: ``-`` becomes ``_``.

    Example:
        >>> normalize_key("first-index")
        'first_index'
    """
    return key.replace("-", "_")


def load_config(
    path: str | PurePath,
    *,
    command: str,
    known: Mapping[str, KeyType],
    commands: Collection[str] = (),
) -> dict[str, object]:
    """Read a TOML config file and return the option values it sets for ``command``.

    Args:
        path: the TOML file.
        command: the command reading the file; its table overrides the top-level keys.
        known: the command's options, by name with ``_`` (``first_index``), with the
            type(s) of their values. A ``Path`` key takes a string, made relative to the
            config file's directory unless it is absolute (``~`` is expanded).
        commands: the names of all commands that read config files. When given, a table
            named after none of them is an error (a mistyped ``[generat]``); when empty,
            tables of other names are ignored.

    Returns:
        The values set by the file, by option name with ``_``, in the order of
        ``known``: ints for ``float`` keys become floats, strings for ``Path`` keys
        become paths. Options the file does not set are absent.

    Raises:
        ConfigNotFoundError: the file does not exist.
        ConfigError: the file is a directory, cannot be read, is not UTF-8 TOML, or has an
            unknown key or a value of the wrong type.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "gan.toml")
        ...     _ = path.write_text('checkpoint = "demo.pt"\\n[generate]\\nfirst-index = 5\\n')
        ...     values = load_config(
        ...         path, command="generate", known={"checkpoint": Path, "first_index": int}
        ...     )
        ...     values["checkpoint"] == Path(tmp, "demo.pt"), values["first_index"]
        (True, 5)
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigNotFoundError(f"config file '{path}' does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"config file '{path}' is a directory, expected a TOML file")
    if not stat.S_ISREG(info.st_mode):  # /dev/zero would be read forever, a pipe waited on
        raise ConfigError(f"config file '{path}' is not a regular file, expected a TOML file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file '{path}' holds {info.st_size:,} bytes, more than a config file "
            f"can ({MAX_CONFIG_BYTES:,}): is it the right file?"
        )
    try:
        with path.open("rb") as f:
            data = tomllib.loads(f.read(MAX_CONFIG_BYTES + 1).decode())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file '{path}' is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' is nested too deeply to be a config") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text, expected TOML") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read config file '{path}': {reason}") from None
    return parse_config(
        data,
        command=command,
        known=known,
        commands=commands,
        base_dir=path.parent,
        source=f"config file '{path}'",
    )


def parse_config(
    data: Mapping[str, Any],
    *,
    command: str,
    known: Mapping[str, KeyType],
    commands: Collection[str] = (),
    base_dir: str | PurePath = ".",
    source: str = "config",
) -> dict[str, object]:
    """Check parsed TOML data and return the option values it sets for ``command``.

    The checks and the result of :func:`load_config`, for data already read.

    Args:
        data: the parsed TOML document (a dict of keys and tables).
        command: the command; its table overrides the top-level keys.
        known: the command's options and their types (see :func:`load_config`).
        commands: the commands that read config files (see :func:`load_config`).
        base_dir: the directory relative paths are relative to.
        source: how error messages name the data (``config file 'x.toml'``).

    Returns:
        The values set for ``command``, by option name with ``_``, in the order of ``known``.

    Raises:
        ConfigError: an unknown key, a key given twice, or a value of the wrong type.

    Example:
        >>> known = {"seed": int, "events": int}
        >>> parse_config({"seed": 3, "generate": {"events": 5}}, command="generate", known=known)
        {'seed': 3, 'events': 5}
        >>> parse_config({"evnts": 5}, command="generate", known=known)
        Traceback (most recent call last):
        ...
        bgcache.errors.ConfigError: config: unknown key 'evnts' (did you mean 'events'?); known keys: seed, events
    """
    known_keys = {normalize_key(k): t for k, t in known.items()}
    base = Path(base_dir)
    values: dict[str, object] = {}
    table: Mapping[str, Any] = {}
    for key, value in data.items():
        if key == command:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{source}: '{key}' must be a table of the '{command}' command's options "
                    f"([{command}]), found {_describe(value)}"
                )
            table = value
        elif isinstance(value, Mapping) and normalize_key(key) not in known_keys:
            if commands and key not in commands:
                hint = did_you_mean(key, commands)
                raise ConfigError(
                    f"{source}: unknown table [{key}]{hint}; tables are named after "
                    f"commands that read config files: {', '.join(commands)}"
                )
            # another command's table: not ours
        else:
            _set(values, key, value, known_keys, base, source, where="")
    overrides: dict[str, object] = {}
    for key, value in table.items():
        _set(overrides, key, value, known_keys, base, source, where=f"[{command}] ")
    values.update(overrides)
    return {k: values[k] for k in known_keys if k in values}


def _set(
    values: dict[str, object],
    key: str,
    value: object,
    known: Mapping[str, KeyType],
    base: Path,
    source: str,
    *,
    where: str,
) -> None:
    name = normalize_key(key)
    if name not in known:
        shown = [_shown(k) for k in known]
        hint = did_you_mean(_shown(key), shown)
        raise ConfigError(
            f"{source}: {where}unknown key '{key}'{hint}; known keys: {', '.join(shown)}"
        )
    if name in values:
        raise ConfigError(
            f"{source}: {where}key '{_shown(key)}' is given twice ('-' and '_' spell the same key)"
        )
    values[name] = _convert(value, known[name], base, f"{source}: {where}key '{key}'")


def _shown(key: str) -> str:
    """A key as error messages list it: like its command-line option, with ``-``."""
    return key.replace("_", "-")


def _convert(value: object, expected: KeyType, base: Path, what: str) -> object:
    """``value`` checked against the expected type(s), converted (int→float, str→Path)."""
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is bool:
            if isinstance(value, bool):
                return value
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif t is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif isinstance(t, type) and issubclass(t, PurePath):
            if isinstance(value, str):
                if not value:
                    raise ConfigError(f"{what} must be a path, found an empty string")
                path = Path(value).expanduser()
                return t(path if path.is_absolute() else base / path)
        elif isinstance(value, t):
            return value
    expected_text = " or ".join(_EXPECTED.get(t, t.__name__) for t in types)
    raise ConfigError(f"{what} must be {expected_text}, found {_describe(value)}")


_EXPECTED: dict[type, str] = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a number",
    str: "a string",
    Path: "a path (a string)",
    PurePath: "a path (a string)",
    list: "an array",
    dict: "a table",
}


def _describe(value: object) -> str:
    """A value as found in the file: its TOML type and the value."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    if isinstance(value, Mapping):
        return "a table"
    kind = names.get(type(value), type(value).__name__)
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"
