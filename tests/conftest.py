"""Shared fixtures: an in-process runner of the ``bgcache`` command line."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bgcache.cli import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``bgcache ARGS...`` in process; returns typer's ``Result`` (stdout, stderr, exit_code).

    ``BGCACHE_*`` environment variables of the caller's shell are removed (they set option
    values); a test sets its own with ``monkeypatch.setenv``.

    Example: ``result = cli("generate", "--model", "synthetic", "-n", "2")``.
    """
    for name in [n for n in os.environ if n.startswith("BGCACHE_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()

    def invoke(*args: str | Sequence[str]) -> Result:
        argv = [a for arg in args for a in ([arg] if isinstance(arg, str) else arg)]
        return runner.invoke(app, argv, prog_name="bgcache")

    return invoke


@pytest.fixture
def pool_files() -> Callable[[object], dict[str, bytes]]:
    """``pool_files(root)``: every column object of a pool (chunks, shards and their array
    metadata) by path. Markers and the root record hold times and writer ids, so they are
    left out: all else must be byte-identical between two builds of the same keys."""
    from pathlib import Path

    def files(root: object) -> dict[str, bytes]:
        base = Path(str(root))
        out = {}
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and len(rel.split("/")) > 4 and not rel.endswith(".partial"):
                out[rel] = path.read_bytes()
        return out

    return files


@pytest.fixture(scope="session")
def raw_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uncalibrated state_dicts of each GAN model (fast to make; for error paths)."""
    torch = pytest.importorskip("torch")
    from bgcache.models import GAN_MODELS
    from bgcache.models._torch import build_plain

    out = {}
    d = tmp_path_factory.mktemp("raw")
    for name in GAN_MODELS:
        torch.manual_seed(1)
        path = d / f"{name}.pt"
        torch.save(build_plain(name).state_dict(), path)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def checkpoint_of(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Path]:
    """``checkpoint_of(model, seed)``: the calibrated demo checkpoint that
    ``init_checkpoint(model, ..., seed=seed)`` writes, made once per run on first use
    (a plain forward each: ~25 s for convnet, ~60 s for ieagan), shared by every test that
    needs one (seed 3 is the demo's, seed 1 "another checkpoint": ask for these unless a
    test needs a third). A test of ``init_checkpoint`` itself makes its own.

    Under pytest-xdist the workers share one directory (beside their own temp directories)
    and a lock per checkpoint: the first worker to need it makes it, the others wait for it
    (``init_checkpoint`` writes the file atomically, so a file there is whole)."""
    pytest.importorskip("torch")
    import fcntl

    from bgcache.models import GAN_MODELS
    from bgcache.models.checkpoint import init_checkpoint

    if os.environ.get("PYTEST_XDIST_WORKER"):
        d = tmp_path_factory.getbasetemp().parent / "checkpoints"
        d.mkdir(exist_ok=True)
    else:
        d = tmp_path_factory.mktemp("checkpoints")

    def of(model: str, seed: int) -> Path:
        if model not in GAN_MODELS:
            raise KeyError(model)
        path = d / f"{model}-{seed}.pt"
        with (d / f"{model}-{seed}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                init_checkpoint(model, path, seed=seed)
        return path

    return of


@pytest.fixture(scope="session")
def demo_checkpoints(checkpoint_of: Callable[[str, int], Path]) -> dict[str, Path]:
    """The demo checkpoint (seed 3) of each GAN model, by name, made on first use."""

    class _Lazy(dict[str, Path]):
        def __missing__(self, name: str) -> Path:
            path = checkpoint_of(name, 3)
            self[name] = path
            return path

    return _Lazy()
