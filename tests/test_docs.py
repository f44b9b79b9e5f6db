"""The code blocks of README.md and docs/: every Python block runs, every ``bgcache`` command
line of a shell block is parsed by the real command line (options, types, ranges), and the
README's quick tour runs line by line (but for its GAN and cluster lines).

Python blocks run in order, one namespace per file, in a fresh directory that holds what
the docs name: ``demo.pt`` (an untrained convnet checkpoint), ``demo-pool`` (300 synthetic
events, which the README's block extends) and, for the user guide,
``convnet-pool`` (built from it), ``overlay/`` (two background overlay ROOT files, written
by real ROOT) and ``simulated_events`` (three synthetic events standing for the reader's
simulation). A statement whose line ends in a comment that starts with an
exception name (``# InvalidSeedError: ...``) must raise it. A block that cannot run here
(a basf2 release with its simulation, a batch system) is preceded in the Markdown by
``<!-- docs-test: not run: REASON -->``; the test counts those and requires the reason.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_NOT_RUN = re.compile(r"<!-- docs-test: not run: (.+?) -->")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :])
            i += 1
        marker = _NOT_RUN.search(lines[start - 1]) if start else None
        yield Block(path, start + 1, lang, "\n".join(body), marker.group(1) if marker else None)
        i += 1


ALL = [b for path in FILES for b in blocks(path)]
PYTHON = [b for b in ALL if b.lang == "python"]
SHELL = [b for b in ALL if b.lang in ("bash", "sh", "console")]


def test_every_block_is_found_and_named() -> None:
    assert len(PYTHON) >= 10 and len(SHELL) >= 20, (len(PYTHON), len(SHELL))
    assert all(b.lang for b in ALL), [str(b) for b in ALL if not b.lang]
    not_run = [b for b in ALL if b.not_run]
    assert all(len(b.not_run or "") > 10 for b in not_run)
    assert len(not_run) <= 3, [str(b) for b in not_run]  # the exceptions stay exceptions


def _expected_error(source: str) -> str | None:
    comment = source.rstrip().splitlines()[-1].partition("#")[2].strip()
    name = re.match(r"(\w+Error)\b", comment)
    return name.group(1) if name else None


def run_python(block: Block, namespace: dict[str, Any]) -> None:
    tree = ast.parse(block.code)
    lines = block.code.splitlines()
    for node in tree.body:
        source = "\n".join(lines[node.lineno - 1 : node.end_lineno])
        code = compile(ast.Module([node], []), f"{block}", "exec")
        expected = _expected_error(source)
        if expected is None:
            exec(code, namespace)
            continue
        with pytest.raises(Exception) as info:  # the name is checked below
            exec(code, namespace)
        assert expected in [c.__name__ for c in type(info.value).__mro__], (source, info.value)


def _overlay_files(folder: Path) -> None:
    """Two background overlay files of 3 synthetic events each, written by real ROOT
    (``tests/root_files.py``), for the user guide's ``bgcache import`` block."""
    import sys

    import bgcache

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import root_files
    finally:
        sys.path.remove(str(Path(__file__).parent))
    folder.mkdir()
    gen = bgcache.load_model("synthetic")
    for run in (1, 2):
        events = gen.events([(run, i) for i in range(3)])
        root_files.write_overlay_file(
            folder / f"run{run}.root", [root_files.event_digits(e) for e in events]
        )


@pytest.fixture(scope="module")
def workdirs(
    tmp_path_factory: pytest.TempPathFactory, demo_checkpoints: dict[str, Path]
) -> dict[str, Path]:
    import bgcache

    out = {}
    for path in FILES:
        if any(b.path == path and b.lang == "python" and not b.not_run for b in PYTHON):
            work = tmp_path_factory.mktemp(path.stem)
            (work / "demo.pt").symlink_to(demo_checkpoints["convnet"])
            bgcache.build_pool(work / "demo-pool", model="synthetic", events=300)
            if path.stem == "user-guide":
                bgcache.build_pool(
                    work / "convnet-pool", model="convnet", checkpoint=work / "demo.pt", events=2
                )
                _overlay_files(work / "overlay")
            out[path.stem] = work
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in FILES if any(b.path == p for b in PYTHON)], ids=str)
def test_python_blocks_run(
    path: Path, workdirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bgcache

    runnable = [b for b in PYTHON if b.path == path and not b.not_run]
    if not runnable:
        pytest.skip(f"{path.name}: its Python blocks need what this machine lacks")
    monkeypatch.chdir(workdirs[path.stem])
    synthetic = bgcache.load_model("synthetic")
    namespace: dict[str, Any] = {
        "__name__": "__docs__",
        "simulated_events": synthetic.events([(99, i) for i in range(3)]),
    }
    for block in runnable:
        try:
            run_python(block, namespace)
        except Exception as exc:
            raise AssertionError(f"{block}: {type(exc).__name__}: {exc}") from exc


def _commands(code: str) -> Iterator[list[str]]:
    joined = code.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        for part in re.split(r"&&|\|\||;", line):
            words = shlex.split(part, comments=True)
            if words and words[0] == "bgcache":
                yield words[1:]


def test_shell_command_lines_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``bgcache ...`` line parses: the subcommand, its options, their types and ranges."""
    import click
    import typer

    from bgcache.cli import app

    group = typer.main.get_command(app)
    checked = 0
    problems = []
    monkeypatch.chdir(ROOT)  # configs/... paths in the docs are relative to the repository
    for block in SHELL:
        for args in _commands(block.code):
            ctx = group.make_context("bgcache", list(args), resilient_parsing=True)
            cmd: click.Command = group
            rest = list(args)
            while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
                sub = cmd.get_command(ctx, rest[0])
                if sub is None:
                    problems.append(f"{block}: no command {rest[0]!r} in {args}")
                    break
                cmd, name, rest = sub, rest[0], rest[1:]
                try:
                    ctx = cmd.make_context(name, list(rest), parent=ctx)
                except click.exceptions.Exit:
                    break
                except click.ClickException as exc:
                    problems.append(f"{block}: bgcache {' '.join(args)}: {exc.format_message()}")
                    break
            checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 40, checked


#: README tour lines that need torch for minutes, a Dask cluster or the reader's overlay files
#: (the user guide's Python block imports and compares for real): parsed above, not run.
_NOT_RUN_HERE = ("checkpoint init", "-m convnet", "--scheduler", "bg-pool", "mixed-pool")


@pytest.mark.slow
def test_readme_quick_tour_runs(tmp_path: Path) -> None:
    """The README's tour, line by line, as a shell would run it, in a fresh directory (its
    synthetic and pool lines; the GAN and cluster lines are parsed by the test above)."""
    import subprocess
    import sys

    readme = next(b for b in SHELL if b.path.name == "README.md" and "A quick tour" in _heading(b))
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    ran = 0
    for args in _commands(readme.code):
        line = " ".join(args)
        if any(part in f" {line}" for part in _NOT_RUN_HERE):
            continue
        argv = [sys.executable, "-m", "bgcache", *args]
        run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"bgcache {line}: {run.stderr[-2000:]}"
        ran += 1
    assert ran >= 10, ran
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def _heading(block: Block) -> str:
    """The Markdown heading above a block."""
    lines = block.path.read_text().splitlines()[: block.line]
    return next((ln for ln in reversed(lines) if ln.startswith("#")), "")
