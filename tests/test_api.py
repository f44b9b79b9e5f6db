"""Pins the public API: exported names, torch-free import, error tree and the model registry."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bgcache
import bgcache.errors
import bgcache.models
from bgcache.errors import BgcacheError, BgcacheWarning, UnknownModelError

# Changing the public API must update this list (and the changelog).
EXPECTED_ALL = sorted(
    [
        "BgcacheError",
        "BuildResult",
        "EventKey",
        "Pool",
        "PoolOverlay",
        "IMAGE_SHAPE",
        "SENSORS",
        "SparseEvent",
        "__version__",
        "build_pool",
        "event_key",
        "get_spec",
        "load_model",
        "merge",
        "open_pool",
        "pack_vxd_id",
        "registered_models",
        "seed_from_string",
        "unpack_vxd_id",
    ]
)


def test_public_api_is_pinned() -> None:
    assert sorted(bgcache.__all__) == EXPECTED_ALL
    assert len(set(bgcache.__all__)) == len(bgcache.__all__)
    for name in bgcache.__all__:
        assert hasattr(bgcache, name), name


def test_version_is_a_string() -> None:
    assert isinstance(bgcache.__version__, str)
    assert bgcache.__version__
    assert bgcache.__version__[0].isdigit()


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, time\n"
        "t0 = time.perf_counter()\n"
        "import bgcache\n"
        "dt = time.perf_counter() - t0\n"
        "print(f'import bgcache: {dt * 1000:.0f} ms')\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'zarr') if m in sys.modules)\n"
        "print('heavy modules:', heavy)\n"
        "assert 'torch' not in sys.modules, 'import bgcache imported torch'\n"
    )
    root = str(Path(bgcache.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip())  # the measured import time, reported not asserted


def test_reading_pools_does_not_import_scipy(tmp_path: Path) -> None:
    """scipy (the compare extra) is for compare's clusters and tests: building, reading,
    overlaying and summarising a pool need numpy only."""
    code = (
        "import sys\n"
        "import bgcache, bgcache.compare, bgcache.clusters, bgcache.significance, bgcache.plot\n"
        "from bgcache.stats import PoolStatistics, compare_with_reference\n"
        f"bgcache.build_pool({str(tmp_path / 'pool')!r}, model='synthetic', events=4)\n"
        f"pool = bgcache.open_pool({str(tmp_path / 'pool')!r})\n"
        "stats = PoolStatistics().add_events(e for _, e in pool.sample(None))\n"
        "compare_with_reference(stats)\n"
        f"with bgcache.PoolOverlay({str(tmp_path / 'pool')!r}, on_exhausted='reuse') as o:\n"
        "    o.next_event()\n"
        "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if 'scipy' in m)\n"
    )
    root = str(Path(bgcache.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _error_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(bgcache.errors).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == "bgcache.errors"
        and not issubclass(obj, Warning)
    ]


ERRORS = _error_classes()


def test_errors_module_defines_the_expected_family() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {
        "BgcacheError",
        "UsageError",
        "InvalidSeedError",
        "InvalidKeyError",
        "UnknownModelError",
        "GeometryError",
        "EventError",
        "MissingDependencyError",
        "CheckpointError",
    } <= names


@pytest.mark.parametrize(
    "cls", [c for c in ERRORS if c is not BgcacheError], ids=lambda c: c.__name__
)
def test_error_derives_from_base_and_a_builtin(cls: type[BaseException]) -> None:
    assert issubclass(cls, BgcacheError)
    builtins = [
        base
        for base in cls.__mro__
        if base.__module__ == "builtins" and base not in (Exception, BaseException, object)
    ]
    assert builtins, f"{cls.__name__} mixes in no builtin exception a caller would catch"


def test_warnings_derive_from_base_warning() -> None:
    warnings = [
        obj
        for obj in vars(bgcache.errors).values()
        if inspect.isclass(obj) and issubclass(obj, Warning) and obj.__module__ == "bgcache.errors"
    ]
    assert warnings
    for cls in warnings:
        assert issubclass(cls, BgcacheWarning)
        assert issubclass(cls, UserWarning)


def test_unknown_model_suggests_closest_name() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'resnet'") as info:
        bgcache.models.get_spec("resnt")
    assert isinstance(info.value, LookupError)
    assert "convnet" in str(info.value)  # the known models are listed


def test_unknown_model_without_close_match() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'zzzz'") as info:
        bgcache.get_spec("zzzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "latent_dim", "conditional", "needs_torch"),
    [
        ("convnet", 96, False, True),
        ("resnet", 96, False, True),
        ("ieagan", 128, True, True),
        ("synthetic", 0, False, False),
    ],
    ids=["convnet", "resnet", "ieagan", "synthetic"],
)
def test_registered_builtin_models(
    name: str, latent_dim: int, conditional: bool, needs_torch: bool
) -> None:
    models = bgcache.registered_models()
    assert list(models)[:4] == ["convnet", "resnet", "ieagan", "synthetic"]
    spec = models[name]
    assert spec.name == name
    assert spec.latent_dim == latent_dim
    assert spec.conditional is conditional
    assert spec.needs_torch is needs_torch
    assert bgcache.get_spec(name) is spec
    assert spec.physics is (name != "synthetic")
    if name == "synthetic":
        assert "NOT a physics model" in spec.description
