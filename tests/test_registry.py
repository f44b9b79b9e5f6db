"""Model registry: built-ins, lookup errors, and third-party generators via entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bgcache.errors import UnknownModelError, UsageError
from bgcache.models import ENTRY_POINT_GROUP, get_spec, load_model, registered_models


def _install_plugin(root: Path, name: str, body: str) -> None:
    """Write a minimal installed distribution (module + dist-info with entry points)."""
    (root / f"{name}_pkg.py").write_text(textwrap.dedent(body))
    info = root / f"{name}_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {name}_pkg:SPEC\n")


PLUGIN = """
    from bgcache.hits import SparseEvent
    from bgcache.models import ModelSpec

    class Flat:
        name = "flat"
        latent_dim = 0

        def events(self, keys):
            return [SparseEvent([0], [0], [int(k[1]) % 250], [9]) for k in keys]

        def metadata(self):
            return {"model": "flat", "physics_model": False}

    def load(checkpoint, **options):
        return Flat()

    SPEC = ModelSpec(
        name="flat", latent_dim=0, conditional=False, needs_torch=False,
        needs_checkpoint=False, n_parameters=0, description="test plugin",
        loader="flat_pkg:load", physics=False,
    )
"""


def test_entry_point_generator_is_registered_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, "flat", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    models = registered_models()
    assert list(models)[:4] == ["convnet", "resnet", "ieagan", "synthetic"]
    assert models["flat"].description == "test plugin"
    gen = load_model("flat")
    assert [e.v.tolist() for e in gen.events([(1, 3), (1, 4)])] == [[3], [4]]
    monkeypatch.delitem(sys.modules, "flat_pkg", raising=False)


def test_entry_point_must_name_a_modelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, "broken", "SPEC = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match=r"must name a bgcache\.models\.ModelSpec"):
        registered_models()
    monkeypatch.delitem(sys.modules, "broken_pkg", raising=False)


def test_builtin_names_resolve_without_scanning_plugins() -> None:
    assert get_spec("ieagan").conditional is True
    assert get_spec("synthetic").physics is False


def test_unknown_model_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownModelError, match=r"did you mean 'ieagan'\?"):
        load_model("ieagn")
    with pytest.raises(LookupError, match="known models: convnet, resnet, ieagan, synthetic"):
        get_spec("nothing-like-it")
