"""Config files (:mod:`bgcache.config`): format, precedence of tables, checks, paths.

The command-line side (``--config``, environment variables) is tested in test_cli.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer.main

from bgcache.cli import app
from bgcache.cli._config import config_keys
from bgcache.config import KeyType, load_config, parse_config
from bgcache.errors import ConfigError, ConfigNotFoundError, UsageError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

KNOWN: dict[str, KeyType] = {
    "model": str,
    "checkpoint": Path,
    "seed": int,
    "events": int,
    "first_index": int,
    "occupancy": float,
    "optimize": bool,
}


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, command: str = "generate", commands: Sequence[str] = ()) -> dict[str, object]:
    return load_config(path, command=command, known=KNOWN, commands=commands)


def generate_known() -> dict[str, KeyType]:
    command = typer.main.get_command(app).commands["generate"]  # type: ignore[attr-defined]
    return {key: kind for key, (_, kind) in config_keys(command).items()}


# -- format -----------------------------------------------------------------------------


def test_command_table_overrides_top_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'model = "synthetic"\nseed = 1\nevents = 10\n[generate]\nseed = 2\n[build]\nseed = 3\n',
    )
    assert load(path) == {"model": "synthetic", "seed": 2, "events": 10}
    assert load(path, command="build") == {"model": "synthetic", "seed": 3, "events": 10}
    assert load(path, command="inspect") == {"model": "synthetic", "seed": 1, "events": 10}


def test_result_follows_the_order_of_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'seed = 4\n[generate]\nevents = 5\nmodel = "synthetic"\n')
    assert list(load(path)) == ["model", "seed", "events"]


def test_empty_file_sets_nothing(tmp_path: Path) -> None:
    assert load(write(tmp_path, "# nothing here\n")) == {}


@pytest.mark.parametrize("spelling", ["first-index", "first_index"], ids=["dash", "underscore"])
def test_keys_with_dash_or_underscore(tmp_path: Path, spelling: str) -> None:
    path = write(tmp_path, f"{spelling} = 7\n[generate]\n{spelling} = 8\n")
    assert load(path) == {"first_index": 8}
    assert load(path, command="build") == {"first_index": 7}


def test_known_keys_may_be_given_with_dashes(tmp_path: Path) -> None:
    path = write(tmp_path, "first_index = 7\n")
    assert load_config(path, command="generate", known={"first-index": int}) == {"first_index": 7}


def test_both_spellings_of_one_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[generate]\nfirst-index = 7\nfirst_index = 8\n")
    with pytest.raises(ConfigError, match=r"\[generate\] key 'first-index' is given twice"):
        load(path)


def test_int_is_accepted_for_float(tmp_path: Path) -> None:
    values = load(write(tmp_path, "occupancy = 1\n"))
    assert values == {"occupancy": 1.0}
    assert isinstance(values["occupancy"], float)


# -- unknown keys and tables ------------------------------------------------------------


def test_unknown_key_suggests_and_lists_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "evnts = 5\n")
    with pytest.raises(ConfigError, match="did you mean 'events'") as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"config file '{path}': unknown key 'evnts'")
    assert (
        "known keys: model, checkpoint, seed, events, first-index, occupancy, optimize" in message
    )
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_unknown_key_in_command_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[generate]\nfirst_indx = 5\n")
    with pytest.raises(
        ConfigError, match=r"\[generate\] unknown key 'first_indx' \(did you mean 'first-index'\?\)"
    ):
        load(path)


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'zzz'; known keys") as info:
        load(write(tmp_path, "zzz = 1\n"))
    assert "did you mean" not in str(info.value)


def test_tables_of_other_commands_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "seed = 1\n[build]\nblock-size = 64\n[generat]\nseed = 9\n")
    assert load(path) == {"seed": 1}
    assert load(path, commands=["generate", "build", "generat"]) == {"seed": 1}


def test_unknown_table_is_an_error_when_commands_are_known(tmp_path: Path) -> None:
    path = write(tmp_path, "[generat]\nseed = 9\n")
    with pytest.raises(
        ConfigError, match=r"unknown table \[generat\] \(did you mean 'generate'\?\)"
    ):
        load(path, commands=["generate", "build"])


def test_command_key_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'generate' must be a table .*found integer 5"):
        load(write(tmp_path, "generate = 5\n"))


# -- wrong types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "needles"),
    [
        pytest.param(
            "seed = true", ["'seed'", "an integer", "found boolean true"], id="bool-for-int"
        ),
        pytest.param('seed = "0"', ["'seed'", "an integer", "found string '0'"], id="str-for-int"),
        pytest.param(
            "events = 2.0", ["'events'", "an integer", "found float 2.0"], id="float-for-int"
        ),
        pytest.param("occupancy = false", ["a number", "found boolean false"], id="bool-for-float"),
        pytest.param("model = 3", ["'model'", "a string", "found integer 3"], id="int-for-str"),
        pytest.param(
            "optimize = 1", ["'optimize'", "a boolean", "found integer 1"], id="int-for-bool"
        ),
        pytest.param(
            "checkpoint = 5", ["'checkpoint'", "a path", "found integer 5"], id="int-for-path"
        ),
        pytest.param('checkpoint = ""', ["'checkpoint'", "empty string"], id="empty-path"),
        pytest.param("seed = [1, 2]", ["'seed'", "found array [1, 2]"], id="array-for-int"),
        pytest.param(
            "[seed]\nx = 1", ["'seed'", "an integer", "found a table"], id="table-for-int"
        ),
    ],
)
def test_wrong_type_names_key_expected_and_found(
    tmp_path: Path, line: str, needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, line + "\n"))
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_wrong_type_in_command_table_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[generate\] key 'events' must be an integer"):
        load(write(tmp_path, '[generate]\nevents = "many"\n'))


def test_tuple_of_types() -> None:
    known: dict[str, KeyType] = {"size": (int, str)}
    assert parse_config({"size": 3}, command="c", known=known) == {"size": 3}
    assert parse_config({"size": "3 GiB"}, command="c", known=known) == {"size": "3 GiB"}
    with pytest.raises(ConfigError, match=r"must be an integer or a string, found float 1\.5"):
        parse_config({"size": 1.5}, command="c", known=known)


# -- files ------------------------------------------------------------------------------


def test_malformed_toml_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "synthetic"\nseed = = 3\n')
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*line 2, column \d+") as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(
        ConfigNotFoundError, match=re.escape(f"config file '{path}' does not exist")
    ) as info:
        load(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ConfigError)
    assert not path.exists()


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, expected a TOML file"):
        load(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'model = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "seed = 1\n")
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match=re.escape(f"cannot read config file '{path}'")):
            load(path)
    finally:
        path.chmod(0o644)


# -- paths ------------------------------------------------------------------------------


def test_relative_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "configs"
    sub.mkdir()
    path = write(sub, 'checkpoint = "ckpt/demo.pt"\n')
    monkeypatch.chdir(tmp_path)
    values = load(Path("configs/c.toml"))
    assert values["checkpoint"] == Path("configs/ckpt/demo.pt")
    assert load(path)["checkpoint"] == sub / "ckpt" / "demo.pt"


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path, 'checkpoint = "/data/x.pt"\n[generate]\n')
    assert load(path)["checkpoint"] == Path("/data/x.pt")
    path = write(tmp_path, 'checkpoint = "~/x.pt"\n')
    assert load(path)["checkpoint"] == tmp_path / "home" / "x.pt"


# -- the example configs ----------------------------------------------------------------

EXAMPLES = sorted(CONFIGS.glob("*.toml"))


def test_example_configs_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "demo.toml",
        "convnet-cpu.toml",
        "resnet-cpu.toml",
        "ieagan-cpu.toml",
        "convnet-gpu.toml",
        "resnet-gpu.toml",
        "ieagan-gpu.toml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_loads_for_generate(path: Path) -> None:
    values = load_config(
        path, command="generate", known=generate_known(), commands=["build", "generate"]
    )
    assert values["model"] in {"synthetic", "convnet", "resnet", "ieagan"}
    checkpoint = values.get("checkpoint")
    if values["model"] == "synthetic":
        assert checkpoint is None
    else:  # a GAN: a checkpoint next to the config, as `bgcache checkpoint init` makes it
        assert isinstance(checkpoint, Path) and checkpoint.parent == CONFIGS
        assert f"bgcache checkpoint init --model {values['model']}" in path.read_text()
    if path.name.endswith("-gpu.toml"):
        assert values["device"] == "cuda"
    if path.name.endswith("-cpu.toml"):
        assert values["device"] == "cpu"


def test_demo_config_is_the_readme_main_job() -> None:
    values = load_config(CONFIGS / "demo.toml", command="generate", known=generate_known())
    assert values == {"model": "synthetic", "seed": 0, "events": 200}


def test_a_named_pipe_as_config_is_refused_without_waiting(tmp_path: Path) -> None:
    """Reading a FIFO would wait for a writer forever: refused by its type, in a real process."""
    import subprocess
    import sys

    fifo = tmp_path / "c.toml"
    os.mkfifo(fifo)
    argv = [sys.executable, "-m", "bgcache", "build", str(tmp_path / "p"), "--config", str(fifo)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "not a regular file" in run.stderr, run.stderr
