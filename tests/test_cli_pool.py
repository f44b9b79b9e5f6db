"""``bgcache build``, ``inspect`` and ``verify`` on real pools: in process and as the script."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from bgcache.config import load_config
from bgcache.store import open_pool
from bgcache.store.format import stream_name

Invoke = Callable[..., Result]  # the `cli` fixture of conftest.py
SCRIPT = Path(sys.executable).with_name("bgcache")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_line_error(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bgcache: error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def pool(tmp_path: Path, cli: Invoke) -> Path:
    path = tmp_path / "pool"
    result = cli(
        "build",
        str(path),
        "-m",
        "synthetic",
        "-n",
        "40",
        "--seed",
        "2",
        "--block-events",
        "16",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    return path


def test_build_summary_and_json(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "p"
    result = cli("build", str(path), "-m", "synthetic", "-n", "20", "--block-events", "8", "-q")
    assert result.exit_code == 0, result.stderr
    assert "built      20 events in 3 blocks" in result.stdout
    assert "kB/event" in result.stdout and "smaller than dense" in result.stdout
    out = ok_json(cli("build", str(path), "-m", "synthetic", "-n", "30", "-q", "--json"))
    assert (out["events_written"], out["blocks_skipped"], out["pool_events"]) == (14, 2, 30)
    assert out["bytes_per_event"] > 50_000


def test_build_progress_bar_goes_to_stderr(cli: Invoke, tmp_path: Path) -> None:
    result = cli("build", str(tmp_path / "p"), "-m", "synthetic", "-n", "10", "--json")
    assert result.exit_code == 0
    assert "events/s" in result.stderr
    assert json.loads(result.stdout)["events_written"] == 10


def test_build_with_demo_config(cli: Invoke, tmp_path: Path) -> None:
    out = ok_json(
        cli(
            "build",
            str(tmp_path / "demo"),
            "--config",
            str(CONFIGS / "demo.toml"),
            "-n",
            "30",
            "-q",
            "--json",
        )
    )
    assert (out["model"], out["seed"], out["block_events"], out["events_written"]) == (
        "synthetic",
        0,
        256,
        30,
    )


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_have_valid_build_tables(path: Path) -> None:
    import typer.main

    from bgcache.cli import app
    from bgcache.cli._config import config_keys

    keys = config_keys(typer.main.get_command(app).commands["build"])  # type: ignore[attr-defined]
    values = load_config(
        path,
        command="build",
        known={k: t for k, (_, t) in keys.items()},
        commands=["build", "generate"],
    )
    assert values["events"] >= 1 and values["block_events"] >= 1


def test_inspect_human_and_json(cli: Invoke, pool: Path) -> None:
    result = cli("inspect", str(pool))
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "model      synthetic" in text
    assert "NOT a physics model" in text
    assert "stream     seed 2: indices 0..39 (40 events, 3 blocks)" in text
    assert "smaller than dense" in text and "blosc zstd level 1" in text
    out = ok_json(cli("inspect", str(pool), "--json"))
    assert out["events"] == 40 and out["streams"][0]["ranges"] == [[0, 40]]
    assert out["layout"]["compression"]["cname"] == "zstd"
    assert out["compression_ratio"] > 50


def test_build_with_a_serving_codec(cli: Invoke, tmp_path: Path) -> None:
    """--codec (or the config key) fixes a new pool's codec; inspect shows it; a later build
    without --codec keeps it, one with another is refused."""
    path = tmp_path / "p"
    (tmp_path / "c.toml").write_text('[build]\ncodec = "lz4hc:3"\n')
    result = cli(
        "build", str(path), "-m", "synthetic", "-n", "4", "--config", str(tmp_path / "c.toml"), "-q"
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "codec      lz4hc:3 (blosc lz4hc level 3, shuffle), crc32c"
        in cli("inspect", str(path)).stdout
    )
    out = ok_json(cli("inspect", str(path), "--json"))
    assert out["codec"] == "lz4hc:3" and out["layout"]["compression"]["clevel"] == 3
    assert cli("build", str(path), "-m", "synthetic", "-n", "6", "-q").exit_code == 0
    assert open_pool(path).layout.compression.codec == "lz4hc:3" and len(open_pool(path)) == 6
    one_line_error(
        cli("build", str(path), "-m", "synthetic", "-n", "8", "--codec", "zstd"),
        1,
        "compressed with lz4hc:3, not zstd:1",
        "bgcache recompress",
    )
    default = tmp_path / "d"
    assert cli("build", str(default), "-m", "synthetic", "-n", "2", "-q").exit_code == 0
    assert ok_json(cli("inspect", str(default), "--json"))["codec"] == "zstd:1"


def test_inspect_stats_and_plot(cli: Invoke, pool: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "pool.png"
    result = cli("inspect", str(pool), "--stats", "--sample", "10", "--plot", str(png), "-q")
    assert result.exit_code == 0, result.stderr
    assert "vs the Geant4 reference" in result.stdout and "per sensor" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = ok_json(cli("inspect", str(pool), "--stats", "--sample", "0", "--json", "-q"))
    assert out["statistics"]["n_events"] == 40
    assert 0.8 < out["statistics"]["overall"]["occupancy_ratio"] < 1.2


@pytest.mark.slow
def test_inspect_untrained_pool_is_marked(
    cli: Invoke, tmp_path: Path, checkpoint_of: Callable[[str, int], Path]
) -> None:
    ckpt = checkpoint_of("convnet", 3)
    result = cli(
        "build",
        str(tmp_path / "gan"),
        "-m",
        "convnet",
        "-c",
        str(ckpt),
        "-n",
        "1",
        "-q",
        "--nintra",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    out = cli("inspect", str(tmp_path / "gan"))
    assert "UNTRAINED DEMO CHECKPOINT" in out.stdout
    info = ok_json(cli("inspect", str(tmp_path / "gan"), "--json"))
    assert info["untrained"] is True and info["content"]["model"] == "convnet"
    assert len(info["checkpoint_sha256"]) == 64


def test_verify_clean_and_damaged(cli: Invoke, pool: Path) -> None:
    result = cli("verify", str(pool), "-q")
    assert result.exit_code == 0, result.stdout
    assert result.stdout.startswith("OK: pool")
    shard = pool / f"streams/{stream_name(2)}/1/index/c/0"
    data = bytearray(shard.read_bytes())
    data[500] ^= 1
    shard.write_bytes(bytes(data))
    result = cli("verify", str(pool), "-q")
    assert result.exit_code == 1
    assert "PROBLEM checksum" in result.stdout and "[seed 2, indices 16..31]" in result.stdout
    assert "DAMAGED" in result.stdout
    out = json.loads(cli("verify", str(pool), "-q", "--json").stdout)
    assert out["ok"] is False and out["problems"][0]["first_index"] == 16


def test_verify_strict_fails_on_leftovers(cli: Invoke, pool: Path) -> None:
    (pool / f"streams/{stream_name(2)}/9").mkdir()
    assert cli("verify", str(pool), "-q").exit_code == 0
    result = cli("verify", str(pool), "-q", "--strict")
    assert result.exit_code == 1 and "incomplete block" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["-m", "synthtic", "-n", "5"], 2, "did you mean 'synthetic'"),
        (["-m", "synthetic", "-n", "0"], 2, "--events"),
        (["-m", "synthetic", "-n", "x"], 2, "--events"),
        (["-m", "synthetic", "-n", "5", "--shard", "4/4"], 2, "K must be in 0..3"),
        (["-m", "synthetic", "-n", "5", "--shard", "1of4"], 2, "K/N"),
        (["-m", "synthetic", "-n", "5", "--seed", str(2**63)], 2, "seed"),
        (["-m", "convnet", "-c", "missing.pt", "-n", "5"], 1, "does not exist"),
        (["-m", "convnet", "-n", "5"], 2, "needs a checkpoint"),
        (["-n", "5"], 2, "--model"),
    ],
    ids=[
        "unknown-model",
        "zero-events",
        "non-integer",
        "shard-range",
        "shard-form",
        "seed-range",
        "missing-checkpoint",
        "no-checkpoint",
        "no-model",
    ],
)
def test_build_bad_input(
    cli: Invoke, tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    if "convnet" in args:
        pytest.importorskip("torch")
    result = cli("build", str(tmp_path / "p"), *args)
    one_line_error(result, code, needle)
    assert not (tmp_path / "p").exists()


def test_build_refuses_a_file_and_a_mismatch_without_touching_the_pool(
    cli: Invoke, pool: Path, tmp_path: Path
) -> None:
    (tmp_path / "f").write_text("data")
    one_line_error(cli("build", str(tmp_path / "f"), "-m", "synthetic", "-n", "2"), 1, "is a file")
    assert (tmp_path / "f").read_text() == "data"
    before = {p: p.stat().st_mtime_ns for p in pool.rglob("*")}
    one_line_error(
        cli("build", str(pool), "-m", "synthetic", "-n", "2", "--block-events", "8"),
        1,
        "block_events=16",
    )
    one_line_error(
        cli("build", str(pool), "-m", "synthetic", "-n", "2", "--seed", "2", "--no-resume"),
        1,
        "--no-resume",
    )
    assert {p: p.stat().st_mtime_ns for p in pool.rglob("*")} == before


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_reading_commands_on_non_pools(cli: Invoke, tmp_path: Path, command: str) -> None:
    one_line_error(cli(command, str(tmp_path / "nope")), 1, "does not exist")
    (tmp_path / "f").write_text("x")
    one_line_error(cli(command, str(tmp_path / "f")), 1, "is a file")
    (tmp_path / "d").mkdir()
    one_line_error(cli(command, str(tmp_path / "d")), 1, "is not a pool")


@pytest.mark.parametrize("command", ["build", "inspect", "verify", "plan", "recompress"])
def test_help_has_examples(cli: Invoke, command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout and f"bgcache {command} " in result.stdout


def test_installed_script_builds_inspects_and_verifies(tmp_path: Path) -> None:
    """The console script of the installed package: the README's main job, shortened."""
    assert SCRIPT.exists(), SCRIPT
    pool = tmp_path / "demo-pool"
    run = subprocess.run(
        [
            str(SCRIPT),
            "build",
            str(pool),
            "--config",
            str(CONFIGS / "demo.toml"),
            "-n",
            "300",
            "-j",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "built      300 events in 2 blocks" in run.stdout
    info = subprocess.run(
        [str(SCRIPT), "inspect", str(pool), "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(info.stdout)["events"] == 300
    check = subprocess.run([str(SCRIPT), "verify", str(pool)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith("OK")
    assert len(open_pool(pool)) == 300


def test_readme_main_job_is_the_demo_build() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert (
        "python3 -m pip install . && bgcache build demo-pool --config configs/demo.toml "
        "&& bgcache inspect demo-pool"
    ) in readme
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    command = "python3 -m pip install tox && python3 -m tox"
    assert command in readme and command in ci


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["inspect", "{pool}", "--plot", "{tmp}/x.jpg"], 2, "must end in .png"),
        (["inspect", "{pool}", "--plot", "{tmp}/x.png", "--event", "999"], 1, "out of range"),
        (["inspect", "{pool}", "--sample", "-1"], 2, "--sample"),
        (["inspect", "gs://bucket/pool"], 2, "gs:// is not supported"),
        (["verify", "s3://"], 2, "names no bucket"),
        (["build", "ftp://host/p", "-m", "synthetic", "-n", "2"], 2, "ftp:// is not supported"),
        (["plan", "{pool}", "-j", "0", "-n", "5"], 2, "--jobs"),
        (["plan", "{pool}", "-j", "2", "-n", "0"], 2, "--events-per-job"),
    ],
    ids=[
        "plot-suffix",
        "event-range",
        "sample-negative",
        "scheme",
        "s3-no-bucket",
        "build-scheme",
        "plan-jobs",
        "plan-events",
    ],
)
def test_reading_commands_bad_input(
    cli: Invoke, pool: Path, tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    before = {p: p.stat().st_mtime_ns for p in pool.rglob("*")}
    argv = [a.format(pool=pool, tmp=tmp_path) for a in args]
    one_line_error(cli(*argv), code, needle)
    assert {p: p.stat().st_mtime_ns for p in pool.rglob("*")} == before
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "quiet"])
def test_ctrl_c_prints_one_line(tmp_path: Path, quiet: bool) -> None:
    """SIGINT during a build: one stderr line that says what to do, exit 130 (-q too)."""
    import signal
    import time

    pool = tmp_path / "pool"
    argv = [sys.executable, "-m", "bgcache", "build", str(pool), "-m", "synthetic"]
    argv += ["-n", "100000", "--block-events", "16"] + (["-q"] if quiet else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(pool.glob("streams/*/*/zarr.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == [  # no frame of the progress bar before it
        "bgcache: error: interrupted: every complete block is kept; run the same command to resume"
    ], err


def test_build_summary_and_progress_read_as_plain_numbers(tmp_path: Path, cli: Invoke) -> None:
    """Rates without exponents, singular counts, what the time line's figures are, and no
    0/0 bar for a build with nothing to do."""
    pool = str(tmp_path / "p")
    first = cli("build", pool, "-m", "synthetic", "-n", "8", "--block-events", "8", "-j", "2")
    assert first.exit_code == 0, first.stderr
    assert "built      8 events in 1 block," in first.stdout
    assert "e+" not in first.stdout + first.stderr
    assert "summed over 2 processes" in first.stdout
    again = cli("build", pool, "-m", "synthetic", "-n", "8")
    assert again.exit_code == 0 and "0/0" not in again.stderr, again.stderr
    assert "skipped    8 events in 1 block that were already complete" in again.stdout


def test_progress_bar_off_a_terminal_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """In a log the bar's last frame is one line: at rich's default 80 columns a count of
    100000 events wrapped it in two (CI's Ctrl-C test then saw three stderr lines)."""
    from bgcache.cli._output import event_progress

    progress = event_progress()
    task_id = progress.add_task("building ieagan-checkpoint-name", total=100_000_000)
    with progress:
        progress.update(task_id, completed=12_345_678)
    frame = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(frame) == 1 and "12345678/100000000" in frame[0] and "ETA" in frame[0], frame


def test_a_failing_command_prints_only_its_error_line(
    cli: Invoke, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal a bar draws its one frame when it stops: a build or a verify that failed
    after its bar had started printed that frame (and a blank line) before the error line."""
    from bgcache.cli._output import event_progress
    from bgcache.store.format import stream_name

    progress = event_progress()
    progress.add_task("verifying blocks", total=3)
    with pytest.raises(ValueError), progress:
        raise ValueError
    assert capsys.readouterr().err == ""
    pool = tmp_path / "p"
    assert (
        cli("build", str(pool), "-m", "synthetic", "-n", "8", "--block-events", "8").exit_code == 0
    )
    (pool / "streams" / stream_name(0) / "1").touch()  # a file where block 1's directory goes
    built = cli("build", str(pool), "-m", "synthetic", "-n", "24")
    assert built.exit_code == 1 and built.stderr.splitlines() == [
        f"bgcache: error: cannot write to pool '{pool}' (streams/{stream_name(0)}/1/counts/c/0): "
        "a file stands where a directory is needed; choose another pool path"
    ], built.stderr
    (pool / "x.partial").symlink_to("/etc/passwd")  # found after the bar started
    verified = cli("verify", str(pool))
    assert verified.exit_code == 1 and len(verified.stderr.splitlines()) == 1, verified.stderr
    assert verified.stderr.startswith(f"bgcache: error: pool '{pool}': 'x.partial' is a symbolic")


def test_progress_rate_is_the_average_since_the_start() -> None:
    """rich's own speed is a recent window: with workers finishing blocks at once it showed
    bursts (1.64e+03 events/s beside a 90.5 events/s summary)."""
    from rich.progress import Progress

    from bgcache.cli._output import RateColumn

    now = [0.0]
    progress = Progress(get_time=lambda: now[0], disable=True)
    task_id = progress.add_task("building", total=1000)
    progress.start_task(task_id)
    for t, done in ((10.0, 0), (10.5, 900)):  # nothing for 10 s, then a burst
        now[0] = t
        progress.update(task_id, completed=done)
    task = progress.tasks[0]
    assert str(RateColumn().render(task)) == "85.7 events/s"  # 900 / 10.5 s
