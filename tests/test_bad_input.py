"""Bad input to every command and every option of the command line, in one table.

Each case runs ``bgcache ARGS...`` (in process, a few also as a real ``python -m bgcache``)
and checks the contract of ``docs/cli.md``: exactly one line ``bgcache: error: ...`` on
stderr that names what is wrong (the needles), exit code 2 for a usage mistake and 1 for
any other error, no traceback, nothing on stdout, and nothing written or changed: every
file under the test's directories (the working directory, the shared pools and
checkpoints) keeps its path, size, mtime and bytes, and no file or directory appears.

``test_every_option_has_a_case`` enumerates the commands and options from the typer app
itself: an option added later without a row here fails it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import Result

from bgcache.build import build_pool
from bgcache.cli import app

Invoke = Callable[..., Result]  # the `cli` fixture of conftest.py
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_BOTO3 = importlib.util.find_spec("boto3") is not None


def _has_cuda() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Case:
    """One row: ``bgcache ARGV`` must fail with ``code`` and one error line with ``needles``.

    ``command`` and ``option`` name what the row tests (``option`` is the first long option
    name, an argument's metavar, or ``COMMAND`` for a group's sub-command); ``argv`` may use
    the placeholders of :func:`_places`. ``files`` are written into the test's directory
    first (text or bytes), ``env`` is set, ``needs`` names a module the case needs.
    """

    command: str
    option: str
    argv: tuple[str, ...]
    code: int
    needles: tuple[str, ...]
    id: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    needs: str | None = None
    stdout_ok: bool = False  # checkpoint info prints the file's info before its error line


CASES: list[Case] = []


def case(
    command: str,
    option: str,
    argv: str | list[str],
    code: int,
    *needles: str,
    id: str,
    env: dict[str, str] | None = None,
    files: dict[str, str | bytes] | None = None,
    needs: str | None = None,
    stdout_ok: bool = False,
) -> None:
    """Add a row; a string ``argv`` is split on spaces (then a placeholder holds no space)."""
    args = argv.split() if isinstance(argv, str) else argv
    CASES.append(
        Case(
            command,
            option,
            tuple(args),
            code,
            needles,
            f"{command.replace(' ', '-') or 'bgcache'}:{option.lstrip('-').lower()}:{id}",
            env or {},
            files or {},
            needs,
            stdout_ok,
        )
    )


SYN = "-m synthetic -n 2"  # a valid build or generate, but for the option under test
BIG = str(2**63)
GAN_NO_CUDA = "torch-no-cuda"

# -- bgcache (the root group) ---------------------------------------------------------------
case("", "--version", "--version=1", 2, "'--version' does not take a value", id="flag-value")
case("", "COMMAND", "genrate", 2, "No such command 'genrate'", "'generate'", id="typo")

# -- bgcache build ---------------------------------------------------------------------------
B = "build"
case(B, "POOL", f"build {SYN}", 2, "Missing argument 'POOL'", id="missing")
case(B, "POOL", ["build", "", *SYN.split()], 2, "pool location is empty", id="empty")
case(B, "POOL", f"build {{file}} {SYN}", 1, "is a file", id="a-file")
case(B, "POOL", f"build {{tmp}}/{'a' * 300} {SYN}", 2, "300 bytes", "shorter name", id="long-name")
LONG = "/".join(["abcdefgh"] * 600)
case(B, "POOL", f"build {{tmp}}/{LONG} {SYN}", 2, "longer than", "shorter path", id="long-path")
case(B, "POOL", f"build ~nouser-bgcache/p {SYN}", 2, "no user 'nouser-bgcache'", id="no-such-user")
case(B, "POOL", f"build file:// {SYN}", 2, "names no path", id="file-url-no-path")
case(B, "POOL", f"build {{file}}/sub {SYN}", 1, "is a file", "no directory", id="under-a-file")
case(B, "POOL", f"build {{nonempty}} {SYN}", 1, "not a pool", "new or empty", id="foreign-dir")
case(B, "POOL", f"build {{newer}} {SYN}", 1, "format version 99", "upgrade", id="newer-format")
case(B, "POOL", f"build {{damaged}} {SYN}", 1, "not valid JSON", id="damaged")
case(B, "POOL", f"build ftp://host/p {SYN}", 2, "ftp:// is not supported", id="scheme")
case(B, "POOL", f"build s3:// {SYN}", 2, "names no bucket", id="s3-no-bucket")
case(
    B,
    "POOL",
    f"build s3://bucket/p {SYN}",
    1,
    "cannot",
    "s3://bucket/p",
    id="s3-unreachable",
    env={
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    },
    needs="boto3",
)
case(B, "POOL", "build {pool} -m convnet -n 2", 1, "holds synthetic events", id="other-model")
case(B, "--model", "build {tmp}/p -n 2", 2, "Missing option '--model'", id="missing")
case(B, "--model", "build {tmp}/p -m synthtic -n 2", 2, "did you mean 'synthetic'", id="typo")
case(B, "--model", ["build", "{tmp}/p", "-m", "", "-n", "2"], 2, "unknown model ''", id="empty")
case(
    B, "--model", "build {tmp}/p -m convnet -n 2", 2, "needs a checkpoint", id="gan", needs="torch"
)
case(B, "--events", "build {tmp}/p -m synthetic", 2, "Missing option '--events'", id="missing")
case(B, "--events", "build {tmp}/p -m synthetic -n 0", 2, "'--events'", "equal to 1", id="zero")
case(B, "--events", "build {tmp}/p -m synthetic -n -3", 2, "'--events'", id="negative")
case(B, "--events", "build {tmp}/p -m synthetic -n abc", 2, "valid integer", id="not-int")
case(
    B,
    "--events",
    f"build {{tmp}}/p -m synthetic -n {2**64}",
    2,
    "blocks",
    "--shard K/N",
    id="huge",
)
case(
    B,
    "--events",
    f"build {{tmp}}/p -m synthetic -n {10**30}",
    2,
    "index",
    "out of range",
    id="past-2**64",
)
case(
    B,
    "--checkpoint",
    "build {tmp}/p -m convnet -n 2 -c {tmp}/nope.pt",
    1,
    "nope.pt",
    "does not exist",
    id="missing-file",
    needs="torch",
)
case(
    B,
    "--checkpoint",
    "build {tmp}/p -m convnet -n 2 -c {dir}",
    1,
    "is a directory",
    id="a-dir",
    needs="torch",
)
case(
    B,
    "--checkpoint",
    "build {tmp}/p -m convnet -n 2 -c {file}",
    1,
    "not a PyTorch checkpoint",
    id="not-torch",
    needs="torch",
)
case(
    B,
    "--checkpoint",
    "build {tmp}/p -m convnet -n 2 -c {resnet}",
    1,
    "looks like a 'resnet' checkpoint",
    id="other-model",
    needs="torch",
)
case(B, "--seed", f"build {{tmp}}/p {SYN} --seed {BIG}", 2, "'--seed'", "out of range", id="big")
case(B, "--seed", f"build {{tmp}}/p {SYN} --seed {-(2**63) - 1}", 2, "out of range", id="small")
case(B, "--seed", f"build {{tmp}}/p {SYN} --seed 1.5", 2, "'--seed'", "integer", id="float")
case(B, "--first-index", f"build {{tmp}}/p {SYN} --first-index -1", 2, "'--first-index'", id="neg")
case(B, "--first-index", f"build {{tmp}}/p {SYN} --first-index {2**64}", 2, "index", id="big")
case(B, "--first-index", f"build {{tmp}}/p {SYN} --first-index x", 2, "integer", id="not-int")
case(B, "--block-events", f"build {{tmp}}/p {SYN} --block-events 0", 2, "'--block-events'", id="0")
case(B, "--block-events", f"build {{tmp}}/p {SYN} --block-events 65537", 2, "65536", id="big")
case(
    B,
    "--block-events",
    "build {pool} -m synthetic -n 2 --seed 2 --block-events 8",
    1,
    "block_events=4",
    id="other-than-pool",
)
case(B, "--batch-events", f"build {{tmp}}/p {SYN} --batch-events 0", 2, "'--batch-events'", id="0")
case(B, "--batch-events", f"build {{tmp}}/p {SYN} --batch-events x", 2, "integer", id="not-int")
case(
    B,
    "--batch-events",
    "build {tmp}/p -m resnet -c {resnet} -n 2 --batch-events 1000",
    2,
    "batch_events",
    "1..256",
    id="gan-too-big",
    needs="torch",
)
case(
    B,
    "--device",
    f"build {{tmp}}/p {SYN} --device tpu",
    2,
    "'--device'",
    "cpu, cuda or cuda:N",
    id="tpu",
)
case(B, "--device", f"build {{tmp}}/p {SYN} --device cuda:x", 2, "not a device", id="bad-index")
case(B, "--device", f"build {{tmp}}/p {SYN} --device cuda", 2, "runs on numpy", id="synthetic")
case(
    B,
    "--device",
    "build {tmp}/p -m resnet -c {resnet} -n 2 --device cuda",
    1,
    "no CUDA GPU",
    "--device cpu",
    id="no-cuda",
    needs=GAN_NO_CUDA,
)
case(B, "--nintra", f"build {{tmp}}/p {SYN} --nintra 0", 2, "nintra", ">= 1", id="zero")
case(B, "--ninter", f"build {{tmp}}/p {SYN} --ninter x", 2, "'--ninter'", "integer", id="not-int")
case(B, "--optimize", f"build {{tmp}}/p {SYN} --optimize=1", 2, "does not take a value", id="val")
case(
    B,
    "--optimize",
    f"build {{tmp}}/p {SYN}",
    2,
    "BGCACHE_OPTIMIZE",
    "boolean",
    id="env",
    env={"BGCACHE_OPTIMIZE": "maybe"},
)
case(B, "--precision", f"build {{tmp}}/p {SYN} --precision fp8", 2, "'--precision'", id="fp8")
case(B, "--precision", f"build {{tmp}}/p {SYN} --precision fp61", 2, "'fp16'?", id="typo")
case(B, "--precision", f"build {{tmp}}/p {SYN} --precision bf16", 2, "only has", id="synthetic")
case(B, "--codec", f"build {{tmp}}/p {SYN} --codec zst", 2, "'--codec'", "'zstd'?", id="typo")
case(B, "--codec", f"build {{tmp}}/p {SYN} --codec lz4:0", 2, "level", "1..9", id="level")
case(B, "--codec", f"build {{tmp}}/p {SYN} --codec lz4:", 2, "level", "1..9", id="no-level")
case(B, "--codec", f"build {{tmp}}/p {SYN}", 2, "BGCACHE_CODEC", "'gzip'", id="env",
     env={"BGCACHE_CODEC": "gzip"})  # fmt: skip
case(
    B,
    "--codec",
    "build {pool} -m synthetic -n 12 --seed 2 --codec lz4",
    1,
    "compressed with zstd:1, not lz4:9",
    "bgcache recompress",
    id="existing-pool",
)
case(B, "--shard", f"build {{tmp}}/p {SYN} --shard 4/4", 2, "K must be in 0..3", id="range")
case(B, "--shard", f"build {{tmp}}/p {SYN} --shard 1of4", 2, "K/N", id="form")
case(B, "--shard", f"build {{tmp}}/p {SYN} --shard 0/0", 2, "N must be >= 1", id="zero-parts")
case(B, "--shard", f"build {{tmp}}/p {SYN} --shard -1/4", 2, "out of range", id="negative")
case(B, "--shard", f"build {{tmp}}/p {SYN}", 2, "K/N", id="env-blank", env={"BGCACHE_SHARD": " "})
case(
    B,
    "--shard",
    f"build {{tmp}}/p {SYN} --config {{tmp}}/c.toml",
    2,
    "'--shard'",
    "K must be in 0..2",
    "c.toml",
    id="from-config",
    files={"c.toml": "[build]\nshard = '9/3'\n"},
)
case(
    B,
    "--resume",
    "build {pool} -m synthetic -n 2 --seed 2 --no-resume",
    1,
    "--no-resume",
    "already holds",
    id="no-resume",
)
case(B, "--resume", f"build {{tmp}}/p {SYN} --resume=no", 2, "does not take a value", id="value")
case(B, "--workers", f"build {{tmp}}/p {SYN} -j 0", 2, "'--workers'", id="zero")
case(B, "--workers", f"build {{tmp}}/p {SYN} -j 257", 2, "256", id="big")
case(B, "--workers", f"build {{tmp}}/p {SYN} -j", 2, "requires an argument", id="no-value")
case(
    B,
    "--scheduler",
    f"build {{tmp}}/p {SYN} --scheduler head-node",
    2,
    "'--scheduler'",
    "tcp://HOST:PORT",
    id="no-port",
)
case(B, "--scheduler", f"build {{tmp}}/p {SYN} --scheduler http://h:80", 2, "tcp://", id="scheme")
case(B, "--scheduler", f"build {{tmp}}/p {SYN} --scheduler tcp://h:99999", 2, "tcp://", id="port")
case(B, "--json", f"build {{tmp}}/p {SYN} --json=yes", 2, "does not take a value", id="value")
case(B, "--quiet", f"build {{tmp}}/p {SYN} --quiet=1", 2, "does not take a value", id="value")
case(
    B,
    "--quiet",
    f"build {{tmp}}/p {SYN}",
    2,
    "BGCACHE_QUIET",
    id="env",
    env={"BGCACHE_QUIET": "maybe"},
)
CONFIG_CASES: list[tuple[str, str | bytes | None, tuple[str, ...]]] = [
    ("missing", None, ("does not exist",)),
    ("a-dir", "", ("is a directory",)),
    ("malformed", 'model = "synthetic\n', ("not valid TOML", "line", "column")),
    ("not-utf8", b"\xff\xfe model", ("not UTF-8",)),
    ("unknown-key", "evnts = 3\n", ("unknown key 'evnts'", "did you mean 'events'")),
    ("bool-for-int", "seed = true\n", ("'seed'", "an integer", "found boolean true")),
    ("str-for-int", "[{cmd}]\nevents = 'many'\n", ("'events'", "found string 'many'")),
    ("int-for-str", "device = 3\n", ("'device'", "a string", "found integer 3")),
    ("unknown-table", "[buidl]\nseed = 1\n", ("unknown table [buidl]", "did you mean 'build'")),
    ("table-not-table", "{cmd} = 3\n", ("must be a table",)),
    ("twice", "first-index = 1\nfirst_index = 2\n", ("given twice",)),
    ("config-in-config", "config = 'x.toml'\n", ("unknown key 'config'",)),
    ("out-of-range", "[{cmd}]\nevents = 0\n", ("'--events'", "value from config file")),
    ("bad-device", "device = 'tpu'\n", ("'--device'", "value from config file")),
    ("bad-seed", f"seed = {BIG}\n", ("'--seed'", "value from config file")),
    ("bad-model", "model = 'convnt'\n", ("did you mean 'convnet'",)),
    ("nested", "a = " + "[" * 5000 + "]" * 5000 + "\n", ("nested too deeply",)),
]


def config_cases(command: str, base: str, prefix: str = "") -> None:
    """The same config-file mistakes for each command that takes ``--config`` (``prefix``:
    top-level keys the command needs besides the mistake)."""
    for name, text, needles in CONFIG_CASES:
        if isinstance(text, str) and text:
            text = prefix + text
        elif isinstance(text, bytes):
            text = prefix.encode() + text
        files: dict[str, str | bytes] = {}
        where = "{tmp}/nope.toml" if text is None else "{tmp}/c.toml"
        if text == "":
            where = "{dir}"
        elif text is not None:
            files["c.toml"] = text.replace("{cmd}", command) if isinstance(text, str) else text
        argv = base.replace("-m synthetic", "") if name == "bad-model" else base
        case(command, "--config", f"{argv} --config {where}", 2, *needles, id=name, files=files)
    case(
        command,
        "--config",
        base,
        2,
        "nope.toml",
        "does not exist",
        id="env",
        env={"BGCACHE_CONFIG": "nope.toml"},
    )
    case(command, "--config", f"{base} --config /dev/zero", 2, "not a regular file", id="dev-zero")


config_cases("build", "build {tmp}/p -m synthetic", prefix="events = 2\n")

# -- bgcache inspect -------------------------------------------------------------------------
for cmd, extra in (("inspect", ""), ("verify", ""), ("plan", " -j 2 -n 3"), ("gc", " -n")):
    case(cmd, "POOL", f"{cmd}{extra}", 2, "Missing argument 'POOL'", id="missing")
    case(cmd, "POOL", f"{cmd} {{tmp}}/nope{extra}", 1, "does not exist", "bgcache build", id="none")
    case(cmd, "POOL", f"{cmd} {{file}}{extra}", 1, "is a file", id="a-file")
    case(cmd, "POOL", f"{cmd} {{dir}}{extra}", 1, "is not a pool", id="empty-dir")
    case(cmd, "POOL", f"{cmd} {{newer}}{extra}", 1, "format version 99", "upgrade", id="newer")
    case(cmd, "POOL", f"{cmd} {{damaged}}{extra}", 1, "not valid JSON", id="damaged")
    case(cmd, "POOL", f"{cmd} {{pool}}/streams{extra}", 1, "not a bgcache pool", id="zarr-group")
    case(cmd, "POOL", [cmd, "", *extra.split()], 2, "pool location is empty", id="empty")
    case(cmd, "POOL", f"{cmd} gs://bucket/p{extra}", 2, "gs:// is not supported", id="scheme")
    case(cmd, "POOL", f"{cmd} s3://{extra}", 2, "names no bucket", id="s3-no-bucket")
    case(
        cmd,
        "POOL",
        f"{cmd} root://se{extra}",
        2,
        "expected root://host[:port]//path",
        id="root-no-path",
    )
    case(cmd, "POOL", f"{cmd} davs://se/{extra}", 2, "names no path", id="davs-no-path")
    case(cmd, "--json", f"{cmd} {{pool}}{extra} --json=1", 2, "does not take a value", id="value")
    case(cmd, "ARGS", f"{cmd} {{pool}}{extra} extra", 2, "unexpected extra argument", id="extra")
INS = "inspect"
case(INS, "--stats", "inspect {pool} --stats=1", 2, "does not take a value", id="value")
case(INS, "--sample", "inspect {pool} --stats --sample -1", 2, "'--sample'", id="negative")
case(INS, "--sample", "inspect {pool} --stats --sample x", 2, "integer", id="not-int")
case(INS, "--plot", "inspect {pool} --plot {tmp}/x.jpg", 2, "must end in .png", id="suffix")
case(INS, "--plot", "inspect {pool} --plot {tmp}/d.png", 2, "is a directory", id="a-dir",
     files={"d.png/keep": "x"})  # fmt: skip
case(INS, "--plot", "inspect {pool} --plot {tmp}/no/x.png", 2, "does not exist", id="no-dir")
case(INS, "--plot", "inspect {pool} --plot {file}/x.png", 2, "is a file", id="under-a-file")
case(INS, "--event", "inspect {pool} --plot {tmp}/x.png --event -1", 2, "'--event'", id="negative")
case(
    INS, "--event", "inspect {pool} --plot {tmp}/x.png --event 8", 1, "out of range", id="past-end"
)
case(INS, "--event", "inspect {pool} --plot {tmp}/x.png --event x", 2, "integer", id="not-int")
case(INS, "--quiet", "inspect {pool} --quiet=1", 2, "does not take a value", id="value")

# -- bgcache verify --------------------------------------------------------------------------
case("verify", "--strict", "verify {pool} --strict=1", 2, "does not take a value", id="value")
case("gc", "--grace", "gc {pool} --grace soon", 2, "duration 'soon'", id="form")
case("gc", "--grace", "gc {pool} --grace -1h", 2, "duration '-1h'", id="negative")
case("gc", "--grace", "gc {pool} --grace", 2, "requires an argument", id="missing")
case("gc", "--dry-run", "gc {pool} --dry-run=1", 2, "does not take a value", id="value")
case("verify", "--quiet", "verify {pool} --quiet=1", 2, "does not take a value", id="value")

# -- bgcache recompress ----------------------------------------------------------------------
RC = "recompress"
LZ = "--codec lz4"
case(RC, "SRC", f"recompress {LZ}", 2, "Missing argument 'SRC'", id="missing")
case(RC, "SRC", f"recompress {{tmp}}/nope {{tmp}}/c {LZ}", 1, "does not exist", id="none")
case(RC, "SRC", f"recompress {{file}} {{tmp}}/c {LZ}", 1, "is a file", id="a-file")
case(RC, "SRC", f"recompress {{dir}} {{tmp}}/c {LZ}", 1, "is not a pool", id="empty-dir")
case(RC, "SRC", f"recompress {{newer}} {{tmp}}/c {LZ}", 1, "format version 99", id="newer")
case(RC, "SRC", f"recompress {{damaged}} {{tmp}}/c {LZ}", 1, "not valid JSON", id="damaged")
case(RC, "SRC", f"recompress gs://b/p {{tmp}}/c {LZ}", 2, "gs:// is not supported", id="scheme")
case(RC, "DST", f"recompress {{pool}} {LZ}", 2, "Missing argument 'DST'", id="missing")
case(RC, "DST", f"recompress {{pool}} {{pool}} {LZ}", 2, "is the source pool", id="same")
case(RC, "DST", f"recompress {{pool}} {{pool}}/c {LZ}", 2, "lies inside the source", id="inside")
case(RC, "DST", f"recompress {{pool}} {{pool}}/../pool/ {LZ}", 2, "is the source", id="spelt")
case(RC, "DST", f"recompress {{pool}} {{file}} {LZ}", 1, "is a file", id="a-file")
case(RC, "DST", f"recompress {{pool}} {{nonempty}} {LZ}", 1, "not a pool", id="foreign-dir")
case(RC, "DST", f"recompress {{pool}} {{damaged}} {LZ}", 1, "not valid JSON", id="damaged")
case(RC, "DST", f"recompress {{pool}} {{newer}} {LZ}", 1, "format version 99", id="newer")
case(RC, "DST", f"recompress {{pool}} ftp://h/p {LZ}", 2, "ftp:// is not supported", id="scheme")
case(RC, "--codec", "recompress {pool} {tmp}/c", 2, "Missing option '--codec'", id="missing")
case(RC, "--codec", "recompress {pool} {tmp}/c --codec lz5", 2, "'lz4'?", id="typo")
case(RC, "--codec", "recompress {pool} {tmp}/c --codec zstd:x", 2, "1..9", id="level")
case(RC, "--json", f"recompress {{pool}} {{tmp}}/c {LZ} --json=1", 2, "does not take", id="value")
case(RC, "--quiet", f"recompress {{pool}} {{tmp}}/c {LZ} --quiet=1", 2, "does not take", id="value")
case(RC, "ARGS", f"recompress {{pool}} {{tmp}}/c x {LZ}", 2, "unexpected extra argument", id="x")

# -- bgcache compare -------------------------------------------------------------------------
CO = "compare"
case(CO, "POOL", "compare", 2, "Missing argument 'POOL'", id="missing")
case(CO, "POOL", "compare {tmp}/nope {pool}", 1, "nope' does not exist", id="none")
case(CO, "POOL", "compare {dir} {pool}", 1, "is not a pool", id="empty-dir")
case(CO, "REFERENCE", "compare {pool}", 2, "Missing argument 'REFERENCE'", id="missing")
case(CO, "REFERENCE", "compare {pool} {tmp}/nope", 1, "nope' does not exist", id="none")
case(CO, "REFERENCE", "compare {pool} {file}", 1, "is a file", id="a-file")
case(CO, "REFERENCE", "compare {pool} {damaged}", 1, "not valid JSON", id="damaged")
case(CO, "--sample", "compare {pool} {pool} --sample -1", 2, "'--sample'", id="negative")
case(CO, "--sample", "compare {pool} {pool} --sample many", 2, "integer", id="not-int")
case(CO, "--plot", "compare {pool} {pool} --plot {tmp}/c.jpg", 2, "must end in .png", id="suffix")
case(CO, "--plot", "compare {pool} {pool} --plot {tmp}/no/c.png", 2, "does not exist", id="no-dir")
case(CO, "--plot", "compare {pool} {pool} --plot /proc/c.png", 2, "no file can be made in '/proc'",
     id="no-file")  # fmt: skip
case(CO, "--json", "compare {pool} {pool} --json=1", 2, "does not take a value", id="value")
case(CO, "--quiet", "compare {pool} {pool} --quiet=1", 2, "does not take a value", id="value")

# -- bgcache fidelity ------------------------------------------------------------------------
FI = "fidelity"
case(FI, "POOL", "fidelity", 2, "Missing argument 'POOL'", id="missing")
case(FI, "POOL", "fidelity {tmp}/nope {pool}", 1, "nope' does not exist", id="none")
case(FI, "POOL", "fidelity {dir} {pool}", 1, "is not a pool", id="empty-dir")
case(FI, "REFERENCE", "fidelity {pool}", 2, "Missing argument 'REFERENCE'", id="missing")
case(FI, "REFERENCE", "fidelity {pool} {tmp}/nope", 1, "nope' does not exist", id="none")
case(FI, "REFERENCE", "fidelity {pool} {damaged}", 1, "not valid JSON", id="damaged")
case(FI, "--events", "fidelity {pool} {pool} --events 3", 2, "'--events'", id="few")
case(FI, "--events", "fidelity {pool} {pool} --events many", 2, "integer", id="not-int")
case(FI, "--json", "fidelity {pool} {pool} --json=1", 2, "does not take a value", id="value")
case(FI, "--quiet", "fidelity {pool} {pool} --quiet=1", 2, "does not take a value", id="value")

# -- bgcache import --------------------------------------------------------------------------
IM = "import"
TXT = {"a.root": "run,event\n"}  # a file named like a ROOT file that is not one
case(IM, "POOL", "import", 2, "Missing argument 'POOL'", id="missing")
case(IM, "POOL", ["import", "", "{tmp}/a.root"], 2, "pool location is empty", id="empty",
     files=TXT)  # fmt: skip
case(IM, "POOL", "import {file} {tmp}/a.root", 1, "is a file", id="a-file", files=TXT,
     needs="uproot")  # fmt: skip
case(IM, "POOL", "import {pool} {tmp}/a.root", 1, "holds generated synthetic events",
     "import into a new pool", id="gan-pool", files=TXT, needs="uproot")  # fmt: skip
case(IM, "POOL", "import {nonempty} {tmp}/a.root", 1, "not a pool", id="foreign-dir", files=TXT,
     needs="uproot")  # fmt: skip
case(IM, "FILE...", "import {tmp}/p", 2, "Missing argument 'FILE...'", id="missing")
case(IM, "FILE...", "import {tmp}/p {tmp}/nope.root", 2, "nope.root' does not exist", id="none")
case(IM, "FILE...", "import {tmp}/p {dir}", 2, "holds no *.root files", id="empty-dir")
case(IM, "FILE...", "import {tmp}/p {tmp}/a.root {tmp}/a.root", 2, "is given twice", id="twice",
     files=TXT)  # fmt: skip
case(IM, "FILE...", "import {tmp}/p /dev/null", 2, "is not a regular file", id="device")
case(IM, "FILE...", "import {tmp}/p {tmp}/a.root", 1, "a.root' is not a ROOT file", id="text",
     files=TXT, needs="uproot")  # fmt: skip
case(IM, "FILE...", "import {tmp}/p {tmp}/b.root", 1, "b.root' cannot be read as a ROOT file",
     "truncated or damaged", id="truncated", files={"b.root": b"root" + bytes(60)},
     needs="uproot")  # fmt: skip
case(IM, "--seed", "import {tmp}/p {tmp}/a.root --seed x", 2, "'--seed'", "integer", id="not-int",
     files=TXT)  # fmt: skip
case(IM, "--seed", f"import {{tmp}}/p {{tmp}}/a.root --seed {BIG}", 2, "out of range", id="big",
     files=TXT)  # fmt: skip
case(IM, "--block-events", "import {tmp}/p {tmp}/a.root --block-events 0", 2, "'--block-events'",
     id="0", files=TXT)  # fmt: skip
case(IM, "--block-events", "import {tmp}/p {tmp}/a.root --block-events 65537", 2, "65536",
     id="big", files=TXT)  # fmt: skip
case(IM, "--shard", "import {tmp}/p {tmp}/a.root --shard 2/2", 2, "K must be in 0..1", id="range",
     files=TXT)  # fmt: skip
case(IM, "--shard", "import {tmp}/p {tmp}/a.root --shard half", 2, "K/N", id="form", files=TXT)
case(IM, "--json", "import {tmp}/p {tmp}/a.root --json=1", 2, "does not take a value", id="value",
     files=TXT)  # fmt: skip
case(IM, "--quiet", "import {tmp}/p {tmp}/a.root --quiet=1", 2, "does not take a value",
     id="value", files=TXT)  # fmt: skip

# -- bgcache plan ----------------------------------------------------------------------------
P = "plan"
case(P, "--jobs", "plan {pool} -n 3", 2, "Missing option '--jobs'", id="missing")
case(P, "--jobs", "plan {pool} -j 0 -n 3", 2, "'--jobs'", id="zero")
case(P, "--jobs", "plan {pool} -j 65537 -n 3", 2, "65536", id="big")
case(P, "--events-per-job", "plan {pool} -j 2", 2, "Missing option '--events-per-job'", id="none")
case(P, "--events-per-job", "plan {pool} -j 2 -n 0", 2, "'--events-per-job'", id="zero")
case(P, "--events-per-job", "plan {pool} -j 2 -n x", 2, "integer", id="not-int")
case(P, "--seed", f"plan {{pool}} -j 2 -n 3 --seed {BIG}", 2, "'--seed'", "out of range", id="big")
case(
    P,
    "--on-exhausted",
    "plan {pool} -j 2 -n 3 --on-exhausted reuze",
    2,
    "'--on-exhausted'",
    "did you mean 'reuse'",
    "generate, reuse, error",
    id="typo",
)

# -- bgcache models --------------------------------------------------------------------------
case("models", "--json", "models --json=1", 2, "does not take a value", id="value")
case("models", "ARGS", "models extra", 2, "unexpected extra argument", id="extra")

# -- bgcache generate ------------------------------------------------------------------------
G = "generate"
GS = "generate -m synthetic"
case(G, "--model", "generate -n 1", 2, "Missing option '--model'", id="missing")
case(G, "--model", "generate -m convnt", 2, "did you mean 'convnet'", id="typo")
case(G, "--model", "generate -m convnet", 2, "needs a checkpoint", id="gan", needs="torch")
case(G, "--checkpoint", "generate -m resnet -c {tmp}/x.pt", 1, "does not exist", id="missing",
     needs="torch")  # fmt: skip
case(G, "--checkpoint", "generate -m resnet -c {dir}", 1, "is a directory", id="a-dir",
     needs="torch")  # fmt: skip
case(G, "--checkpoint", "generate -m resnet -c {file}", 1, "not a PyTorch", id="not-torch",
     needs="torch")  # fmt: skip
case(G, "--checkpoint", "generate -m convnet -c {resnet}", 1, "looks like a 'resnet' checkpoint",
     id="other-model", needs="torch")  # fmt: skip
case(G, "--seed", f"{GS} --seed {BIG}", 2, "'--seed'", "out of range", id="big")
case(G, "--seed", f"{GS} --seed x", 2, "integer", id="not-int")
case(G, "--events", f"{GS} -n 0", 2, "'--events'", id="zero")
case(G, "--events", f"{GS} -n -3", 2, "'--events'", id="negative")
case(G, "--events", f"{GS} -n {10**30}", 2, "out of range", id="huge")
case(G, "--first-index", f"{GS} --first-index -1", 2, "'--first-index'", id="negative")
case(G, "--first-index", f"{GS} -n 2 --first-index {2**64 - 1}", 2, "out of range", id="overflow")
case(G, "--device", f"{GS} --device tpu", 2, "'--device'", "cpu, cuda or cuda:N", id="tpu")
case(G, "--device", f"{GS} --device cuda", 2, "runs on numpy", id="synthetic")
case(G, "--device", "generate -m resnet -c {resnet} --device cuda", 1, "no CUDA GPU", id="no-cuda",
     needs=GAN_NO_CUDA)  # fmt: skip
case(G, "--nintra", f"{GS} --nintra 0", 2, "nintra", ">= 1", id="zero")
case(G, "--ninter", f"{GS} --ninter -1", 2, "ninter", ">= 1", id="negative")
case(G, "--optimize", f"{GS} --no-optimize=1", 2, "does not take a value", id="value")
case(
    G,
    "--precision",
    f"{GS} --precision fp8",
    2,
    "'--precision'",
    "auto, fp32, bf16-mixed, bf16, fp16",
    id="fp8",
)
case(G, "--precision", "generate -m resnet -c {resnet} --precision fp8", 2, "'--precision'",
     id="gan-fp8", needs="torch")  # fmt: skip
case(G, "--json", f"{GS} --json=1", 2, "does not take a value", id="value")
case(G, "--quiet", GS, 2, "BGCACHE_QUIET", id="env", env={"BGCACHE_QUIET": "maybe"})
config_cases("generate", GS)

# -- bgcache checkpoint ----------------------------------------------------------------------
case("checkpoint", "COMMAND", "checkpoint inti", 2, "No such command", "'init'", id="typo")
CI = "checkpoint init"
INIT = "checkpoint init -q -m convnet"
case(CI, "--model", "checkpoint init -o {tmp}/x.pt", 2, "Missing option '--model'", id="missing")
case(CI, "--model", "checkpoint init -m convnt -o {tmp}/x.pt", 2, "'convnet'", id="typo")
case(CI, "--model", "checkpoint init -m synthetic -o {tmp}/x.pt", 2, "takes no checkpoint",
     id="not-a-gan")  # fmt: skip
case(CI, "--output", INIT, 2, "Missing option '--output'", id="missing")
case(CI, "--output", f"{INIT} -o {{file}}", 2, "already exists", "--force", id="exists")
case(CI, "--output", f"{INIT} -o {{dir}}", 2, "is a directory", id="a-dir")
case(CI, "--output", f"{INIT} -o {{tmp}}/no/x.pt", 2, "does not exist", id="no-dir")
case(CI, "--output", f"{INIT} -o {{file}}/x.pt", 2, "is a file", id="under-a-file")
case(CI, "--occupancy", f"{INIT} -o {{tmp}}/x.pt --occupancy 0", 2, "(0, 0.2]", id="zero")
case(CI, "--occupancy", f"{INIT} -o {{tmp}}/x.pt --occupancy 0.5", 2, "(0, 0.2]", id="big")
case(CI, "--occupancy", f"{INIT} -o {{tmp}}/x.pt --occupancy nan", 2, "(0, 0.2]", id="nan")
case(CI, "--occupancy", f"{INIT} -o {{tmp}}/x.pt --occupancy x", 2, "'--occupancy'", id="not-num")
case(CI, "--seed", f"{INIT} -o {{tmp}}/x.pt --seed {BIG}", 2, "'--seed'", "out of range", id="big")
case(CI, "--seed", f"{INIT} -o {{tmp}}/x.pt --seed x", 2, "integer", id="not-int")
case(CI, "--force", f"{INIT} -o {{tmp}}/x.pt --force=1", 2, "does not take a value", id="value")
case(CI, "--json", f"{INIT} -o {{tmp}}/x.pt --json=1", 2, "does not take a value", id="value")
case(CI, "--quiet", f"{INIT} -o {{tmp}}/x.pt --quiet=1", 2, "does not take a value", id="value")
CF = "checkpoint info"
case(CF, "FILE", "checkpoint info", 2, "Missing argument 'FILE'", id="missing")
case(CF, "FILE", "checkpoint info {tmp}/x.pt", 1, "does not exist", id="none", needs="torch")
case(CF, "FILE", "checkpoint info {dir}", 1, "is a directory", id="a-dir", needs="torch")
case(CF, "FILE", "checkpoint info {file}", 1, "not a PyTorch", id="not-torch", needs="torch")
case(CF, "--model", "checkpoint info {resnet} -m convnt", 2, "'convnet'", id="typo", needs="torch")
case(CF, "--model", "checkpoint info {resnet} -m synthetic", 2, "takes no checkpoint",
     id="not-a-gan", needs="torch")  # fmt: skip
case(CF, "--model", "checkpoint info {resnet} -m convnet", 1, "does not match model 'convnet'",
     id="other-model", needs="torch", stdout_ok=True)  # fmt: skip
case(CF, "--json", "checkpoint info {file} --json=1", 2, "does not take a value", id="value")

#: Parameters without a row, and why. Empty: every option of every command has one.
#: (``--help`` is not a parameter of the commands: click adds it, the same for all.)
EXEMPT: dict[tuple[str, str], str] = {}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only material of the cases: a pool, a newer-format and a damaged copy of it,
    and (with torch) an uncalibrated resnet checkpoint (its layout is all that matters)."""
    root = tmp_path_factory.mktemp("shared")
    pool = root / "pool"
    build_pool(pool, model="synthetic", events=8, seed=2, block_events=4)
    newer = root / "newer"
    shutil.copytree(pool, newer)
    doc = json.loads((newer / "zarr.json").read_text())
    doc["attributes"]["bgcache"]["format_version"] = 99
    (newer / "zarr.json").write_text(json.dumps(doc))
    damaged = root / "damaged"
    shutil.copytree(pool, damaged)
    (damaged / "zarr.json").write_text("{not json")
    out = {"root": root, "pool": pool, "newer": newer, "damaged": damaged}
    if HAS_TORCH:
        import torch

        from bgcache.models._torch import build_plain

        torch.manual_seed(0)
        out["resnet"] = root / "resnet.pt"
        torch.save(build_plain("resnet").state_dict(), out["resnet"])
    return out


def _places(tmp: Path, shared: dict[str, Path]) -> dict[str, str]:
    (tmp / "afile").write_text("not a pool, not a checkpoint\n")
    (tmp / "adir").mkdir()
    (tmp / "nonempty").mkdir()
    (tmp / "nonempty" / "notes.txt").write_text("mine\n")
    places = {"tmp": str(tmp), "file": str(tmp / "afile"), "dir": str(tmp / "adir")}
    places["nonempty"] = str(tmp / "nonempty")
    places.update({k: str(v) for k, v in shared.items() if k != "root"})
    return places


def snapshot(*roots: Path) -> dict[str, Any]:
    """Every file (path, size, mtime, sha256 of its bytes) and directory under ``roots``."""
    out: dict[str, Any] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath)
            for name in dirnames:
                out[str(base / name)] = "dir"
            for name in filenames:
                path = base / name
                st = path.stat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def _skip_unless(needs: str | None) -> None:
    if needs == "torch" and not HAS_TORCH:
        pytest.skip("needs torch")
    if needs == "boto3" and not HAS_BOTO3:
        pytest.skip("needs boto3")
    if needs == GAN_NO_CUDA and (not HAS_TORCH or _has_cuda()):
        pytest.skip("needs torch on a machine without CUDA")


def _argv(c: Case, places: dict[str, str]) -> list[str]:
    return [a.format(**places) for a in c.argv]


@pytest.fixture
def workspace(
    tmp_path: Path, shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The case's directory (also the working directory) with a file, an empty and a
    non-empty directory; the shared material's placeholders."""
    places = _places(tmp_path, shared)
    monkeypatch.chdir(tmp_path)
    yield places


def assert_contract(c: Case, code: int, stdout: str, stderr: str) -> None:
    """One error line naming the problem, the right exit code, no traceback."""
    assert code == c.code, (code, stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), repr(stderr)  # one line, no blank ones
    line = lines[0]
    assert line.startswith("bgcache: error: "), line
    assert "Traceback" not in stderr and "Traceback" not in stdout
    for needle in c.needles:
        assert needle in line, (needle, line)
    if not c.stdout_ok:
        assert stdout == "", stdout


# -- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    c: Case,
    cli: Invoke,
    workspace: dict[str, str],
    shared: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _skip_unless(c.needs)
    tmp = Path(workspace["tmp"])
    for name, content in c.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for key, value in c.env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(tmp, shared["root"])
    result = cli(_argv(c, workspace))
    assert_contract(c, result.exit_code, result.stdout, result.stderr)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    assert snapshot(tmp, shared["root"]) == before, "a refused command wrote or changed files"


#: Cases also run as a real process (``python -m bgcache``): exit status and stderr as a
#: shell sees them.
SUBPROCESS = [
    "build:events:zero",
    "build:pool:a-file",
    "build:block-events:other-than-pool",
    "build:scheduler:no-port",
    "generate:model:typo",
    "generate:quiet:env",
    "inspect:pool:newer",
    "plan:on-exhausted:typo",
    "checkpoint-init:output:exists",
]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_input_in_a_real_process(
    case_id: str, workspace: dict[str, str], shared: dict[str, Path]
) -> None:
    (c,) = [c for c in CASES if c.id == case_id]
    tmp = Path(workspace["tmp"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGCACHE_")}
    env.update(c.env)
    env["COLUMNS"] = "200"
    before = snapshot(tmp, shared["root"])
    proc = subprocess.run(
        [sys.executable, "-m", "bgcache", *_argv(c, workspace)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=env,
        timeout=120,
        check=False,
    )
    assert_contract(c, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(tmp, shared["root"]) == before


# -- the table covers everything ---------------------------------------------------------------


def _param_key(param: Any) -> str:
    if getattr(param, "param_type_name", None) == "argument":
        return str(param.metavar or param.name).upper()
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0] if longs else param.opts[0]


def cli_parameters() -> set[tuple[str, str]]:
    """Every (command path, parameter) of the app, and (group, ``COMMAND``) per group."""
    found: set[tuple[str, str]] = set()

    def walk(command: Any, path: str) -> None:
        for param in command.params:
            found.add((path, _param_key(param)))
        if hasattr(command, "commands"):
            found.add((path, "COMMAND"))
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def table_counts() -> dict[str, int]:
    """How much the table covers: commands (groups included), parameters, cases."""
    params = cli_parameters()
    return {
        "commands": len({c for c, _ in params}),
        "parameters": len({p for p in params if p[1] != "COMMAND"}),
        "cases": len(CASES),
        "subprocess_cases": len(SUBPROCESS),
    }


def test_every_option_has_a_case(capsys: pytest.CaptureFixture[str]) -> None:
    params = cli_parameters()
    covered = {(c.command, c.option) for c in CASES}
    missing = params - covered - set(EXEMPT)
    assert not missing, f"options without a bad-input case (add rows to CASES): {sorted(missing)}"
    stale = {k for k in covered | set(EXEMPT) if k[1] != "ARGS"} - params  # ARGS: extra args
    assert not stale, f"rows for options that do not exist: {sorted(stale)}"
    # a usage mistake is exit code 2; other errors exit code 1; nothing else
    assert {c.code for c in CASES} == {1, 2}
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    with capsys.disabled():
        print("\nbad-input table:", table_counts())
