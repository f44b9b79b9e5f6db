"""The ``bgcache`` command line: in process (typer's CliRunner) and once as the installed script.

Exit codes: 0 success, 1 a bgcache error, 2 a usage mistake; an error is always one line
``bgcache: error: ...`` on stderr and never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

import bgcache
from bgcache.cli import app
from bgcache.models import get_spec

SCRIPT = Path(sys.executable).with_name("bgcache")
UNTRAINED = "UNTRAINED demo network — not a physics model"
Invoke = Callable[..., Result]  # the `cli` fixture of conftest.py


def assert_one_line_error(result: Result, code: int, *needles: str) -> str:
    """The command failed with ``code`` and printed one error line (and no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bgcache: error: "), lines[0]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def parse_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


# -- basics -----------------------------------------------------------------------------


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"bgcache {bgcache.__version__}\n"


@pytest.mark.parametrize(
    "command",
    [[], ["models"], ["generate"], ["checkpoint"], ["checkpoint", "init"], ["checkpoint", "info"]],
    ids=lambda c: " ".join(c) or "bgcache",
)
def test_every_help_has_examples(cli: Invoke, command: list[str]) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Usage: bgcache" in result.stdout
    assert "Examples" in result.stdout
    assert "bgcache " + " ".join(command) in result.stdout


def test_no_arguments_shows_help(cli: Invoke) -> None:
    result = cli()
    assert "Usage: bgcache" in result.output
    assert "Traceback" not in result.output


def test_main_entry_point_exits_with_code(capsys: pytest.CaptureFixture[str]) -> None:
    from bgcache.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--model", "convnt"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("bgcache: error: unknown model 'convnt'")


# -- models -----------------------------------------------------------------------------


def test_models_table(cli: Invoke) -> None:
    result = cli("models")
    assert result.exit_code == 0, result.stderr
    for name in ("convnet", "resnet", "ieagan", "synthetic"):
        assert name in result.stdout
    assert "20,444,865" in result.stdout
    assert "NOT a physics model" in result.stdout


def test_install_hints_keep_their_brackets(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rich reads ``[gan]`` as markup: every hint must print the extra it names."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    result = cli("models")
    assert "pip install 'bgcache[gan]'" in " ".join(result.stdout.split()), result.stdout
    monkeypatch.setenv("COLUMNS", "250")
    helped = cli("build", "--help")
    assert "needs bgcache[dask]" in " ".join(helped.stdout.split()), helped.stdout
    from bgcache.cli._output import note

    note("install 'bgcache[plot]' for [that]")
    assert "install 'bgcache[plot]' for [that]" in capsys.readouterr().err


def test_models_json(cli: Invoke) -> None:
    rows = {row["name"]: row for row in parse_json(cli("models", "--json"))}
    assert list(rows)[:4] == ["convnet", "resnet", "ieagan", "synthetic"]
    assert rows["convnet"]["latent_dim"] == 96
    assert rows["ieagan"] == {
        "name": "ieagan",
        "latent_dim": 128,
        "n_parameters": get_spec("ieagan").n_parameters,
        "conditional": True,
        "needs_torch": True,
        "needs_checkpoint": True,
        "physics": True,
        "description": get_spec("ieagan").description,
    }
    assert rows["synthetic"]["needs_torch"] is False
    assert rows["synthetic"]["physics"] is False


# -- generate ---------------------------------------------------------------------------


def test_generate_synthetic_json(cli: Invoke) -> None:
    out = parse_json(cli("generate", "--model", "synthetic", "--events", "5", "--json"))
    assert out["model"] == "synthetic"
    assert (out["events"], out["seed"], out["first_index"]) == (5, 0, 0)
    assert out["seconds"] > 0 and out["events_per_second"] > 0
    hits = out["hits_per_event"]
    assert 30_000 < hits["mean"] < 120_000 and hits["std"] >= 0
    assert hits["min"] <= hits["mean"] <= hits["max"]
    for layer in ("layer1", "layer2", "overall"):
        occ = out["occupancy"][layer]
        assert 0.002 < occ["reference"] < 0.03
        assert occ["measured"] == pytest.approx(occ["reference"], rel=0.2)
    assert out["occupancy"]["layer1"]["reference"] > out["occupancy"]["layer2"]["reference"]
    assert out["mean_charge"]["measured"] == pytest.approx(out["mean_charge"]["reference"], rel=0.1)
    assert out["physics_model"] is False
    assert "NOT a physics model" in out["note"]
    assert out["metadata"]["model"] == "synthetic"
    assert out["precision"] == "fp32"


def test_generate_is_deterministic_per_key(cli: Invoke) -> None:
    def hits(*args: str) -> dict[str, float]:
        out = parse_json(cli("generate", "-m", "synthetic", "-q", "--json", *args))
        return dict(out["hits_per_event"])

    assert hits("--seed", "7", "-n", "3") == hits("--seed", "7", "-n", "3")
    assert hits("--seed", "7", "-n", "3") != hits("--seed", "8", "-n", "3")
    assert hits("--seed", "7", "-n", "3") != hits("--seed", "7", "--first-index", "3", "-n", "3")


def test_generate_summary_text(cli: Invoke) -> None:
    result = cli("generate", "--model", "synthetic", "--events", "3", "--seed", "-5")
    assert result.exit_code == 0, result.stderr
    for text in (
        "3 events",
        "seed -5",
        "events/s",
        "hits/event",
        "occupancy layer 1",
        "occupancy layer 2",
        "mean charge",
        "Geant4 reference",
        "NOT a physics model",
    ):
        assert text in result.stdout, text
    assert "3/3" in result.stderr  # the progress bar


def test_generate_quiet_prints_nothing_on_stderr(cli: Invoke) -> None:
    result = cli("generate", "--model", "synthetic", "-n", "2", "--quiet", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    json.loads(result.stdout)


def test_generate_synthetic_ignores_checkpoint(cli: Invoke, tmp_path: Path) -> None:
    result = cli("generate", "-m", "synthetic", "-n", "1", "-c", str(tmp_path / "x.pt"), "--json")
    assert result.exit_code == 0
    assert "ignoring --checkpoint" in result.stderr


BAD_GENERATE = [
    pytest.param(["--events", "0"], 2, ["--events"], id="events-0"),
    pytest.param(["--events", "-3"], 2, ["--events"], id="events-negative"),
    pytest.param(["--events", "abc"], 2, ["--events", "integer"], id="events-not-int"),
    pytest.param(["--seed", str(2**63)], 2, [str(2**63), "out of range"], id="seed-2**63"),
    pytest.param(["--seed", str(-(2**63) - 1)], 2, ["out of range"], id="seed-below-int64"),
    pytest.param(["--seed", "1.5"], 2, ["--seed"], id="seed-not-int"),
    pytest.param(["--nintra", "0"], 2, ["nintra", ">= 1"], id="nintra-0"),
    pytest.param(["--ninter", "-1"], 2, ["ninter", ">= 1"], id="ninter-negative"),
    pytest.param(["--first-index", "-1"], 2, ["--first-index"], id="first-index-negative"),
    pytest.param(["--first-index", str(2**64 - 1), "-n", "2"], 2, ["index"], id="index-overflow"),
    pytest.param(["--bogus"], 2, ["--bogus"], id="unknown-option"),
    pytest.param(["--precision", "bf16"], 2, ["precision", "fp32"], id="precision-synthetic"),
]


@pytest.mark.parametrize(("args", "code", "needles"), BAD_GENERATE)
def test_generate_bad_input(cli: Invoke, args: list[str], code: int, needles: list[str]) -> None:
    result = cli("generate", "--model", "synthetic", *args)
    assert_one_line_error(result, code, *needles)
    assert result.stdout == ""


def test_generate_unknown_model_suggests(cli: Invoke) -> None:
    result = cli("generate", "--model", "convnt")
    assert_one_line_error(result, 2, "unknown model 'convnt'", "did you mean 'convnet'")


def test_generate_missing_model(cli: Invoke) -> None:
    assert_one_line_error(cli("generate"), 2, "--model")


def test_unknown_command(cli: Invoke) -> None:
    assert_one_line_error(cli("genrate"), 2, "genrate")


def test_generate_gan_without_checkpoint(cli: Invoke) -> None:
    pytest.importorskip("torch")
    result = cli("generate", "--model", "convnet", "-n", "1")
    assert_one_line_error(result, 2, "needs a checkpoint", "bgcache checkpoint init")


def test_generate_gan_missing_checkpoint_file(cli: Invoke, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    missing = tmp_path / "nope.pt"
    result = cli("generate", "--model", "resnet", "-c", str(missing), "-n", "1")
    assert_one_line_error(result, 1, str(missing), "does not exist")


def test_gan_without_torch_is_one_line(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # hide torch (and bgcache's torch module, so that it is imported again and fails)
    import bgcache.models

    monkeypatch.setitem(sys.modules, "torch", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "bgcache.models._torch", raising=False)
    monkeypatch.delattr(bgcache.models, "_torch", raising=False)
    ckpt = tmp_path / "demo.pt"
    ckpt.write_bytes(b"PK")
    result = cli("generate", "--model", "convnet", "-c", str(ckpt), "-n", "1")
    assert_one_line_error(result, 1, "PyTorch", "pip install")
    assert_one_line_error(cli("checkpoint", "info", str(ckpt)), 1, "PyTorch", "pip install")


# -- generate: config files and environment variables ------------------------------------

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def write_config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_generate_help_shows_config(cli: Invoke) -> None:
    result = cli("generate", "--help")
    assert "--config" in result.stdout and "BGCACHE_CONFIG" in result.stdout
    assert "bgcache generate --config configs/demo.toml" in result.stdout


def test_generate_with_demo_config_and_command_line_override(cli: Invoke) -> None:
    out = parse_json(cli("generate", "--config", str(CONFIGS / "demo.toml"), "-n", "5", "--json"))
    # model and seed from the file (no --model needed), events from the command line
    assert (out["model"], out["seed"], out["events"]) == ("synthetic", 0, 5)
    assert out["physics_model"] is False


def test_generate_config_values_and_command_table(cli: Invoke, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'model = "synthetic"\nseed = 7\nevents = 50\n'
        "[generate]\nevents = 2\nfirst-index = 3\njson = true\nquiet = true\n",
    )
    result = cli("generate", "--config", str(path))
    out = parse_json(result)  # `json = true` in the file
    assert (out["seed"], out["events"], out["first_index"]) == (7, 2, 3)
    assert result.stderr == ""  # `quiet = true`: no progress bar


def test_generate_precedence_cli_env_config_default(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, 'model = "synthetic"\nevents = 3\nseed = 5\n')

    def run(*args: str) -> dict[str, Any]:
        out = parse_json(cli("generate", "--config", str(path), "-q", "--json", *args))
        return {k: out[k] for k in ("events", "seed", "first_index")}

    assert run() == {"events": 3, "seed": 5, "first_index": 0}  # config > default
    monkeypatch.setenv("BGCACHE_EVENTS", "2")
    monkeypatch.setenv("BGCACHE_FIRST_INDEX", "4")
    assert run() == {"events": 2, "seed": 5, "first_index": 4}  # env > config, env > default
    assert run("-n", "1", "--seed", "6") == {"events": 1, "seed": 6, "first_index": 4}  # CLI wins


def test_generate_config_from_environment(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "BGCACHE_CONFIG", str(write_config(tmp_path, 'model = "synthetic"\nseed = 8\n'))
    )
    out = parse_json(cli("generate", "-n", "1", "-q", "--json"))
    assert (out["model"], out["seed"]) == ("synthetic", 8)
    other = write_config(tmp_path, 'model = "synthetic"\nseed = 9\n', name="other.toml")
    out = parse_json(cli("generate", "--config", str(other), "-n", "1", "-q", "--json"))
    assert out["seed"] == 9  # --config wins over BGCACHE_CONFIG


def test_generate_options_from_environment(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGCACHE_MODEL", "synthetic")
    monkeypatch.setenv("BGCACHE_SEED", "-3")
    monkeypatch.setenv("BGCACHE_OPTIMIZE", "false")
    out = parse_json(cli("generate", "-n", "1", "-q", "--json"))
    assert (out["model"], out["seed"], out["optimize"]) == ("synthetic", -3, False)


BAD_CONFIG = [
    pytest.param(None, ["does not exist"], id="missing-file"),
    pytest.param("", ["is a directory"], id="directory"),
    pytest.param('model = "synthetic\n', ["not valid TOML", "line 1, column"], id="malformed"),
    pytest.param("evnts = 3\n", ["unknown key 'evnts'", "did you mean 'events'"], id="unknown-key"),
    pytest.param(
        "seed = true\n", ["'seed'", "an integer", "found boolean true"], id="bool-for-int"
    ),
    pytest.param("[generat]\nseed = 1\n", ["unknown table [generat]"], id="unknown-table"),
    pytest.param("events = 0\n", ["--events", "value from config file"], id="out-of-range"),
    pytest.param("config = 'x.toml'\n", ["unknown key 'config'"], id="config-in-config"),
]


@pytest.mark.parametrize(("text", "needles"), BAD_CONFIG)
def test_generate_bad_config_is_one_line(
    cli: Invoke, tmp_path: Path, text: str | None, needles: list[str]
) -> None:
    if text is None:
        path = tmp_path / "nope.toml"
    elif text == "":
        path = tmp_path
    else:
        path = write_config(tmp_path, text)
    result = cli("generate", "--model", "synthetic", "--config", str(path))
    line = assert_one_line_error(result, 2, *needles)
    assert str(path) in line
    assert result.stdout == ""


def test_generate_config_checkpoint_is_relative_to_the_file(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    (tmp_path / "configs").mkdir()
    write_config(tmp_path / "configs", 'model = "resnet"\ncheckpoint = "nope.pt"\n')
    monkeypatch.chdir(tmp_path)
    result = cli("generate", "--config", "configs/c.toml", "-n", "1")
    assert_one_line_error(result, 1, str(Path("configs") / "nope.pt"), "does not exist")


# -- checkpoint: errors that need no network run ------------------------------------------


def test_checkpoint_info_missing_file(cli: Invoke) -> None:
    pytest.importorskip("torch")
    result = cli("checkpoint", "info", "/nonexistent.pt")
    assert_one_line_error(result, 1, "/nonexistent.pt")
    assert result.stdout == ""


def test_checkpoint_info_text_file(cli: Invoke, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n" * 20)
    result = cli("checkpoint", "info", str(text))
    assert_one_line_error(result, 1, str(text), "not a PyTorch checkpoint")


def test_checkpoint_init_into_missing_directory(cli: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "demo.pt"
    result = cli("checkpoint", "init", "--model", "resnet", "-o", str(out), "-q")
    assert_one_line_error(result, 2, "does not exist")
    assert not (tmp_path / "no").exists()


def test_checkpoint_init_keeps_existing_file(cli: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "demo.pt"
    out.write_bytes(b"precious bytes")
    before = out.stat().st_mtime_ns
    result = cli("checkpoint", "init", "--model", "convnet", "-o", str(out), "-q")
    assert_one_line_error(result, 2, "already exists", "--force")
    assert out.read_bytes() == b"precious bytes"
    assert out.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.pt"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--model", "synthetic"], ["takes no checkpoint"], id="not-a-gan"),
        pytest.param(["--model", "convnt"], ["did you mean 'convnet'"], id="typo"),
        pytest.param(["--model", "resnet", "--occupancy", "0.5"], ["occupancy"], id="occupancy"),
        pytest.param(["--model", "resnet", "--occupancy", "0"], ["occupancy"], id="occupancy-0"),
        pytest.param(["--model", "resnet", "--seed", str(2**63)], ["out of range"], id="seed"),
        pytest.param([], ["--model"], id="no-model"),
    ],
)
def test_checkpoint_init_bad_input(
    cli: Invoke, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    result = cli("checkpoint", "init", *args, "-o", str(tmp_path / "x.pt"), "-q")
    assert_one_line_error(result, 2, *needles)
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_init_requires_output(cli: Invoke) -> None:
    assert_one_line_error(cli("checkpoint", "init", "--model", "resnet"), 2, "--output")


# -- checkpoint: a real (untrained, calibrated) demo network ------------------------------


@pytest.fixture(scope="module")
def demo_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A convnet demo checkpoint made through the command line (runs the network: ~25 s),
    with what the command said; the model is the cheapest, the command the same for all."""
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    path = tmp_path_factory.mktemp("ckpt") / "convnet-demo.pt"
    args = ["checkpoint", "init", "--model", "convnet", "--seed", "3", "-o", str(path)]
    result = CliRunner().invoke(app, args, prog_name="bgcache")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return path, result


@pytest.mark.slow
def test_checkpoint_init_writes_untrained_calibrated_file(demo_cli: tuple[Path, Result]) -> None:
    path, result = demo_cli
    assert path.is_file()
    assert UNTRAINED in result.stdout
    assert "convnet (layout matches)" in result.stdout


@pytest.mark.slow
def test_checkpoint_info_text(cli: Invoke, demo_cli: tuple[Path, Result]) -> None:
    path, _ = demo_cli
    result = cli("checkpoint", "info", str(path))
    assert result.exit_code == 0, result.stderr
    assert UNTRAINED in result.stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() in result.stdout
    assert f"{get_spec('convnet').n_parameters:,}" in result.stdout
    assert "seed 3" in result.stdout


@pytest.mark.slow
def test_checkpoint_info_json(cli: Invoke, demo_cli: tuple[Path, Result]) -> None:
    path, _ = demo_cli
    info = parse_json(cli("checkpoint", "info", str(path), "--json"))
    assert info["model"] == "convnet" and info["matches"] is True
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["size_bytes"] == path.stat().st_size
    assert info["n_parameters"] == get_spec("convnet").n_parameters
    assert info["untrained"] is True and info["problems"] == []
    assert info["demo"]["seed"] == 3
    assert info["demo"]["measured_occupancy"] == pytest.approx(0.009, rel=0.5)


@pytest.mark.slow
def test_checkpoint_info_wrong_model(cli: Invoke, demo_cli: tuple[Path, Result]) -> None:
    path, _ = demo_cli
    result = cli("checkpoint", "info", str(path), "--model", "resnet")
    assert_one_line_error(result, 1, "does not match model 'resnet'")
    assert "DOES NOT MATCH" in result.stdout  # the info is printed before the error


@pytest.mark.slow
def test_checkpoint_init_refuses_overwrite(cli: Invoke, demo_cli: tuple[Path, Result]) -> None:
    path, _ = demo_cli
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    result = cli("checkpoint", "init", "--model", "convnet", "-o", str(path), "-q")
    assert_one_line_error(result, 2, "already exists")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_generate_with_demo_checkpoint(cli: Invoke, demo_checkpoints: dict[str, Path]) -> None:
    path = demo_checkpoints["resnet"]
    out = parse_json(cli("generate", "-m", "resnet", "-c", str(path), "-n", "1", "-q", "--json"))
    assert out["physics_model"] is False
    assert out["note"] == UNTRAINED
    assert out["metadata"]["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # calibrated: a realistic occupancy, never dense noise
    assert 0.001 < out["occupancy"]["overall"]["measured"] < 0.03


# -- the installed script -----------------------------------------------------------------

needs_script = pytest.mark.skipif(
    not SCRIPT.exists(), reason=f"bgcache is not installed as a script next to {sys.executable}"
)


@needs_script
def test_script_version_is_fast(capsys: pytest.CaptureFixture[str]) -> None:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(SCRIPT), "--version"], capture_output=True, text=True, check=False
        )
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"bgcache {bgcache.__version__}\n"
    best = min(times)
    with capsys.disabled():
        print(
            f"\n`bgcache --version`: {best:.3f} s (best of 3; runs: "
            + ", ".join(f"{t:.3f}" for t in times)
            + ")"
        )
    assert best < 1.0


@needs_script
@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["models"],
        ["models", "--json"],
        ["generate", "--model", "synthetic", "-n", "1", "--quiet", "--json"],
    ],
    ids=" ".join,
)
def test_script_does_not_import_torch(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "bgcache.cli" in imported
    assert not {"torch", "zarr"} & imported, sorted({"torch", "zarr"} & imported)
    if args == ["--version"]:
        assert "rich.table" not in imported and "rich.progress" not in imported


@needs_script
def test_script_error_has_no_traceback() -> None:
    proc = subprocess.run(
        [str(SCRIPT), "generate", "--model", "synthetic", "--events", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bgcache: error: ")
    assert proc.stdout == ""


@pytest.mark.slow
def test_checkpoint_init_says_what_it_does(
    demo_cli: tuple[Path, Result], demo_checkpoints: dict[str, Path]
) -> None:
    """20-90 s of work are not silent: each step is a line on stderr (not a terminal here),
    and reporting them changes nothing in the file: the command's file is the API's, byte
    for byte (the same seed makes the same checkpoint)."""
    out, result = demo_cli
    lines = result.stderr.splitlines()  # one line each (notes do not wrap)
    assert any("calibrating normalisation layer 1 of" in line for line in lines), lines
    assert any("measuring the occupancy" in line for line in lines), lines
    assert any(f"writing {out}" in " ".join(line.split()) for line in lines), lines
    assert out.read_bytes() == Path(demo_checkpoints["convnet"]).read_bytes()
