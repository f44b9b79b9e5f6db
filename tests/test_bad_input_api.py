"""Bad input to the Python API: the exact error class, a BgcacheError that is also the
builtin a caller would catch (``except ValueError`` keeps working), and a message that
names the problem, on one line.

The command-line side is ``tests/test_bad_input.py``.
"""

from __future__ import annotations

import builtins
import importlib.util
import inspect
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bgcache.errors as errors
from bgcache import PoolOverlay, build_pool, event_key, get_spec, load_model, open_pool
from bgcache.build import parse_shard
from bgcache.config import load_config, parse_config
from bgcache.distributed import check_address
from bgcache.errors import (
    BgcacheError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    ConfigError,
    ConfigNotFoundError,
    DeviceError,
    EventError,
    EventNotFoundError,
    GeometryError,
    ImportSourceError,
    InvalidKeyError,
    InvalidSeedError,
    NotAPoolError,
    PoolExistsError,
    PoolFormatError,
    PoolMismatchError,
    PoolNotFoundError,
    PositionError,
    UnknownModelError,
    UsageError,
)
from bgcache.geometry import pack_vxd_id, sensor_index, unpack_vxd_id
from bgcache.hits import SparseEvent
from bgcache.overlay import plan_jobs
from bgcache.plot import check_plot_path
from bgcache.seeding import as_keys, validate_seed

HAS_TORCH = importlib.util.find_spec("torch") is not None
BIG = 2**63


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The material: a pool (seed 2, 8 events in blocks of 4), a newer-format copy, a
    file, an empty directory, a config file's directory and (with torch) a resnet
    state_dict."""
    root = tmp_path_factory.mktemp("api")
    pool = root / "pool"
    build_pool(pool, model="synthetic", events=8, seed=2, block_events=4)
    newer = root / "newer"
    shutil.copytree(pool, newer)
    doc = json.loads((newer / "zarr.json").read_text())
    doc["attributes"]["bgcache"]["format_version"] = 99
    (newer / "zarr.json").write_text(json.dumps(doc))
    (root / "afile").write_text("text\n")
    (root / "text.root").write_text("run,event\n")  # named like a ROOT file, not one
    (root / "adir").mkdir()
    (root / "bad.toml").write_text("seed = true\n")
    (root / "typo.toml").write_text("evnts = 3\n")
    (root / "broken.toml").write_text("seed = \n")
    out: dict[str, Any] = {
        "root": root,
        "pool": pool,
        "opened": open_pool(pool),
        "newer": newer,
        "file": root / "afile",
        "dir": root / "adir",
        "text_root": root / "text.root",
    }
    if HAS_TORCH:
        import torch

        from bgcache.models._torch import build_plain

        torch.manual_seed(0)
        out["resnet"] = root / "resnet.pt"
        torch.save(build_plain("resnet").state_dict(), out["resnet"])
    return out


Call = Callable[[dict[str, Any]], object]
ROWS: list[Any] = []


def row(
    id: str, call: Call, error: type[BgcacheError], builtin: type[Exception], match: str
) -> None:
    ROWS.append(pytest.param(call, error, builtin, match, id=id))


def torch_row(
    id: str, call: Call, error: type[BgcacheError], builtin: type[Exception], match: str
) -> None:
    marks = pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
    ROWS.append(pytest.param(call, error, builtin, match, id=id, marks=marks))


def syn(w: dict[str, Any], **kw: Any) -> object:
    """A synthetic build into a new location, with ``kw`` changed."""
    args: dict[str, Any] = {"model": "synthetic", "events": 2}
    args.update(kw)
    pool = args.pop("pool", w["root"] / "never")
    return build_pool(pool, **args)


def recompress(w: dict[str, Any], target: Path, **kw: Any) -> object:
    from bgcache.store.recompress import recompress_pool

    return recompress_pool(kw.pop("source", w["pool"]), target, codec=kw.pop("codec", "lz4"), **kw)


# -- opening and reading pools ---------------------------------------------------------------
row("open-missing", lambda w: open_pool(w["root"] / "nope"), PoolNotFoundError,
    FileNotFoundError, "does not exist: build one")  # fmt: skip
row("open-file", lambda w: open_pool(w["file"]), NotAPoolError, ValueError, "is a file")
row("open-dir", lambda w: open_pool(w["dir"]), NotAPoolError, ValueError, "is not a pool")
row("open-newer", lambda w: open_pool(w["newer"]), PoolFormatError, ValueError, "upgrade bgcache")
row("open-empty", lambda w: open_pool(""), UsageError, ValueError, "pool location is empty")
row("open-scheme", lambda w: open_pool("ftp://h/p"), UsageError, ValueError, "not supported")
row("open-s3", lambda w: open_pool("s3://"), UsageError, ValueError, "names no bucket")
row("event-past-end", lambda w: w["opened"].event(8), PositionError, IndexError, "0..7")
row("event-not-int", lambda w: w["opened"].event("1"), PositionError, IndexError, "integer")
row("key-missing", lambda w: w["opened"].event_by_key(2, 99), EventNotFoundError, LookupError,
    "stream 2 holds 0..7")  # fmt: skip
row("key-other-seed", lambda w: w["opened"].event_by_key(5, 0), EventNotFoundError, LookupError,
    "no stream with seed 5")  # fmt: skip
row("key-seed-range", lambda w: w["opened"].event_by_key(BIG, 0), InvalidSeedError, ValueError,
    "out of range")  # fmt: skip
row("key-index-range", lambda w: w["opened"].position(2, -1), InvalidKeyError, ValueError,
    "out of range")  # fmt: skip

# -- building --------------------------------------------------------------------------------
row("build-model", lambda w: syn(w, model="synthtic"), UnknownModelError, LookupError,
    "did you mean 'synthetic'")  # fmt: skip
row("build-events-0", lambda w: syn(w, events=0), UsageError, ValueError, "events must be >= 1")
row("build-events-bool", lambda w: syn(w, events=True), UsageError, ValueError, "integer")
row("build-events-huge", lambda w: syn(w, events=2**64), UsageError, ValueError, "--shard K/N")
row("build-seed", lambda w: syn(w, seed=BIG), InvalidSeedError, ValueError, "out of range")
row("build-index", lambda w: syn(w, first_index=-1), InvalidKeyError, ValueError, "out of range")
row("build-block", lambda w: syn(w, block_events=0), UsageError, ValueError, "block_events")
row("build-workers", lambda w: syn(w, workers=0), UsageError, ValueError, "workers")
row("build-threads", lambda w: syn(w, nintra=0), UsageError, ValueError, "nintra")
row("build-shard", lambda w: syn(w, shard="4/4"), UsageError, ValueError, "K must be in 0..3")
row("build-scheduler", lambda w: syn(w, scheduler="head"), UsageError, ValueError,
    "tcp://HOST:PORT")  # fmt: skip
row("build-device", lambda w: syn(w, device="tpu"), UsageError, ValueError, "device must be 'cpu'")
row(
    "build-precision",
    lambda w: syn(w, precision="fp8"),
    UsageError,
    ValueError,
    "precision must be one of auto, fp32",
)
row("build-file", lambda w: syn(w, pool=w["file"]), NotAPoolError, ValueError, "is a file")
row("build-under-file", lambda w: syn(w, pool=w["file"] / "p"), NotAPoolError, ValueError,
    "no directory can be made")  # fmt: skip
row("build-newer", lambda w: syn(w, pool=w["newer"]), PoolFormatError, ValueError, "upgrade")
row("build-other-model", lambda w: syn(w, pool=w["pool"], model="convnet"), PoolMismatchError,
    ValueError, "holds synthetic events")  # fmt: skip
row("build-other-layout", lambda w: syn(w, pool=w["pool"], seed=2, block_events=8),
    PoolMismatchError, ValueError, "block_events=4")  # fmt: skip
row("build-no-resume", lambda w: syn(w, pool=w["pool"], seed=2, resume=False), PoolExistsError,
    FileExistsError, "--no-resume")  # fmt: skip
row("build-codec", lambda w: syn(w, codec="gzip"), UsageError, ValueError, "zstd, lz4, lz4hc")
row("build-codec-level", lambda w: syn(w, codec="zstd:22"), UsageError, ValueError, "1..9")
row("build-other-codec", lambda w: syn(w, pool=w["pool"], seed=2, codec="lz4hc"),
    PoolMismatchError, ValueError, "zstd:1, not lz4hc:9")  # fmt: skip
row("recompress-same", lambda w: recompress(w, w["pool"]), UsageError, ValueError,
    "is the source pool")  # fmt: skip
row("recompress-inside", lambda w: recompress(w, w["pool"] / "streams" / "x"), UsageError,
    ValueError, "lies inside the source")  # fmt: skip
row("recompress-codec", lambda w: recompress(w, w["root"] / "never", codec="lz4:0"), UsageError,
    ValueError, "1..9")  # fmt: skip
row("recompress-newer", lambda w: recompress(w, w["newer"]), PoolFormatError, ValueError,
    "upgrade")  # fmt: skip
row("recompress-missing", lambda w: recompress(w, w["root"] / "never", source=w["dir"]),
    NotAPoolError, ValueError, "is not a pool")  # fmt: skip
row("parse-shard", lambda w: parse_shard("1of4"), UsageError, ValueError, "K/N")
row("scheduler-address", lambda w: check_address("tcp://h:0"), UsageError, ValueError, "tcp://")

# -- importing and comparing -----------------------------------------------------------------
HAS_UPROOT = importlib.util.find_spec("uproot") is not None


def uproot_row(
    id: str, call: Call, error: type[BgcacheError], builtin: type[Exception], match: str
) -> None:
    marks = pytest.mark.skipif(not HAS_UPROOT, reason="needs uproot")
    ROWS.append(pytest.param(call, error, builtin, match, id=id, marks=marks))


def imp(w: dict[str, Any], files: list[Any], **kw: Any) -> object:
    from bgcache.importer import import_pool

    return import_pool(kw.pop("pool", w["root"] / "never"), files, **kw)


def cmp(w: dict[str, Any], **kw: Any) -> object:
    from bgcache.compare import compare_pools

    return compare_pools(w["pool"], kw.pop("reference", w["pool"]), **kw)


row("import-no-files", lambda w: imp(w, []), UsageError, ValueError, "no background files")
row("import-missing", lambda w: imp(w, [w["root"] / "nope.root"]), UsageError, ValueError,
    "does not exist")  # fmt: skip
row("import-twice", lambda w: imp(w, [w["text_root"]] * 2), UsageError, ValueError, "given twice")
row("import-dir", lambda w: imp(w, [w["dir"]]), UsageError, ValueError, "holds no *.root files")
row("import-block", lambda w: imp(w, [w["text_root"]], block_events=0), UsageError, ValueError,
    "block_events must be an integer in 1..65536")  # fmt: skip
row("import-seed", lambda w: imp(w, [w["text_root"]], seed=BIG), InvalidSeedError, ValueError,
    "out of range")  # fmt: skip
uproot_row("import-not-root", lambda w: imp(w, [w["text_root"]]), ImportSourceError, ValueError,
           "is not a ROOT file")  # fmt: skip
uproot_row("import-into-gan", lambda w: imp(w, [w["text_root"]], pool=w["pool"]),
           PoolMismatchError, ValueError, "holds generated synthetic events")  # fmt: skip
row("compare-sample", lambda w: cmp(w, sample=-1), UsageError, ValueError, "sample must be")
row("compare-missing", lambda w: cmp(w, reference=w["root"] / "nope"), PoolNotFoundError,
    FileNotFoundError, "does not exist")  # fmt: skip


# -- models and checkpoints ------------------------------------------------------------------
row("spec-typo", lambda w: get_spec("resnt"), UnknownModelError, LookupError, "'resnet'")
row("spec-empty", lambda w: get_spec(""), UnknownModelError, LookupError, "known models")
row("synthetic-device", lambda w: load_model("synthetic", device="cuda"), UsageError, ValueError,
    "runs on numpy")  # fmt: skip
row("synthetic-checkpoint", lambda w: load_model("synthetic", "x.pt"), UsageError, ValueError,
    "takes no checkpoint")  # fmt: skip
row("synthetic-threads", lambda w: load_model("synthetic", ninter=0), UsageError, ValueError,
    "ninter")  # fmt: skip
torch_row("gan-no-checkpoint", lambda w: load_model("convnet"), UsageError, ValueError,
          "needs a checkpoint")  # fmt: skip
torch_row("gan-missing", lambda w: load_model("resnet", w["root"] / "x.pt"),
          CheckpointNotFoundError, FileNotFoundError, "does not exist")  # fmt: skip
torch_row("gan-dir", lambda w: load_model("resnet", w["dir"]), CheckpointFormatError, ValueError,
          "is a directory")  # fmt: skip
torch_row("gan-text", lambda w: load_model("resnet", w["file"]), CheckpointFormatError,
          ValueError, "not a PyTorch checkpoint")  # fmt: skip
torch_row("gan-other-model", lambda w: load_model("convnet", w["resnet"]),
          CheckpointMismatchError, ValueError, "looks like a 'resnet' checkpoint")  # fmt: skip
torch_row("gan-device", lambda w: load_model("resnet", w["resnet"], device="tpu"), UsageError,
          ValueError, "not a torch device")  # fmt: skip
torch_row("gan-precision", lambda w: load_model("resnet", w["resnet"], precision="fp8"),
          UsageError, ValueError, "auto, fp32, bf16-mixed, bf16, fp16")  # fmt: skip
torch_row("gan-batch", lambda w: load_model("resnet", w["resnet"], batch_events=0), UsageError,
          ValueError, "batch_events")  # fmt: skip


def _info(w: dict[str, Any], **kw: Any) -> object:
    from bgcache.models.checkpoint import checkpoint_info

    return checkpoint_info(w["resnet"] if "path" not in kw else kw.pop("path"), **kw)


def _init(w: dict[str, Any], model: str = "convnet", **kw: Any) -> object:
    from bgcache.models.checkpoint import init_checkpoint

    return init_checkpoint(model, kw.pop("path", w["root"] / "new.pt"), **kw)


torch_row("info-missing", lambda w: _info(w, path=w["root"] / "x.pt"), CheckpointNotFoundError,
          FileNotFoundError, "does not exist")  # fmt: skip
torch_row("info-model-typo", lambda w: _info(w, model="convnt"), UnknownModelError, LookupError,
          "did you mean 'convnet'")  # fmt: skip
torch_row("info-not-gan", lambda w: _info(w, model="synthetic"), UsageError, ValueError,
          "takes no checkpoint")  # fmt: skip
row("init-not-gan", lambda w: _init(w, "synthetic"), UsageError, ValueError, "takes no checkpoint")
row("init-typo", lambda w: _init(w, "convnt"), UnknownModelError, LookupError, "'convnet'")
row("init-occupancy", lambda w: _init(w, occupancy=0.5), UsageError, ValueError, "(0, 0.2]")
row("init-seed", lambda w: _init(w, seed=BIG), InvalidSeedError, ValueError, "out of range")
row("init-exists", lambda w: _init(w, path=w["file"]), UsageError, ValueError, "already exists")
row("init-dir", lambda w: _init(w, path=w["dir"]), UsageError, ValueError, "is a directory")
row("init-no-dir", lambda w: _init(w, path=w["root"] / "no" / "x.pt"), UsageError, ValueError,
    "does not exist")  # fmt: skip
row("init-under-file", lambda w: _init(w, path=w["file"] / "x.pt"), UsageError, ValueError,
    "is a file")  # fmt: skip


def _gan_no_cuda() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return not torch.cuda.is_available()


ROWS.append(
    pytest.param(
        lambda w: load_model("resnet", w["resnet"], device="cuda"),
        DeviceError,
        RuntimeError,
        "no CUDA GPU is available",
        id="gan-no-cuda",
        marks=pytest.mark.skipif(not _gan_no_cuda(), reason="needs torch without CUDA"),
    )
)

# -- keys, geometry, events ------------------------------------------------------------------
row("key-seed", lambda w: event_key(BIG, 0), InvalidSeedError, ValueError, "out of range")
row("key-seed-type", lambda w: event_key("1", 0), InvalidSeedError, ValueError, "not an integer")
row("key-bool", lambda w: validate_seed(True), InvalidSeedError, ValueError, "not an integer")
row("key-index", lambda w: event_key(0, 2**64), InvalidKeyError, ValueError, "out of range")
row("key-pair", lambda w: as_keys([(1,)]), InvalidKeyError, ValueError, "(seed, index) pair")
row("vxd-layer", lambda w: pack_vxd_id(8, 1, 1), GeometryError, ValueError, "layer 0..7")
row("pxd-layer", lambda w: sensor_index(3, 1, 1), GeometryError, ValueError, "layer must be 1 or 2")
row("vxd-16bit", lambda w: unpack_vxd_id(1 << 16), GeometryError, ValueError, "16-bit")
row("event-dense", lambda w: SparseEvent.from_dense(__import__("numpy").zeros((2, 2), "u1")),
    EventError, ValueError, "dense event must have shape")  # fmt: skip

# -- config files ------------------------------------------------------------------------------
KNOWN = {"seed": int, "events": int}
row("config-missing", lambda w: load_config(w["root"] / "x.toml", command="generate", known=KNOWN),
    ConfigNotFoundError, FileNotFoundError, "does not exist")  # fmt: skip
row("config-dir", lambda w: load_config(w["dir"], command="generate", known=KNOWN), ConfigError,
    ValueError, "is a directory")  # fmt: skip
row("config-toml", lambda w: load_config(w["root"] / "broken.toml", command="g", known=KNOWN),
    ConfigError, ValueError, "not valid TOML")  # fmt: skip
row("config-type", lambda w: load_config(w["root"] / "bad.toml", command="g", known=KNOWN),
    ConfigError, ValueError, "must be an integer, found boolean true")  # fmt: skip
row("config-key", lambda w: load_config(w["root"] / "typo.toml", command="g", known=KNOWN),
    ConfigError, ValueError, "did you mean 'events'")  # fmt: skip
row("config-table", lambda w: parse_config({"gen": {}}, command="g", known=KNOWN, commands=["g"]),
    ConfigError, ValueError, "unknown table [gen]")  # fmt: skip

# -- overlay and plans -------------------------------------------------------------------------
row("overlay-missing", lambda w: PoolOverlay(w["root"] / "nope"), PoolNotFoundError,
    FileNotFoundError, "does not exist")  # fmt: skip
row("overlay-njobs", lambda w: PoolOverlay(w["opened"], njobs=0), UsageError, ValueError,
    "njobs")  # fmt: skip
row("overlay-job", lambda w: PoolOverlay(w["opened"], job=2, njobs=2), UsageError, ValueError,
    "job must be an integer in 0..1")  # fmt: skip
row("overlay-policy", lambda w: PoolOverlay(w["opened"], on_exhausted="reuze"), UsageError,
    ValueError, "did you mean 'reuse'")  # fmt: skip
row("overlay-corrupt", lambda w: PoolOverlay(w["opened"], on_corrupt="skp"), UsageError,
    ValueError, "did you mean 'skip'")  # fmt: skip
row("overlay-seed", lambda w: PoolOverlay(w["opened"], seed=BIG), InvalidSeedError, ValueError,
    "out of range")  # fmt: skip
row("overlay-threads", lambda w: PoolOverlay(w["opened"], prefetch_threads=0), UsageError,
    ValueError, "prefetch_threads")  # fmt: skip
row("plan-njobs", lambda w: plan_jobs(w["opened"], njobs=0, events_per_job=1), UsageError,
    ValueError, "njobs")  # fmt: skip
row("plan-policy", lambda w: plan_jobs(w["opened"], njobs=1, events_per_job=1, on_exhausted="x"),
    UsageError, ValueError, "on_exhausted must be one of")  # fmt: skip
row("plan-missing", lambda w: plan_jobs(w["root"] / "nope", njobs=1, events_per_job=1),
    PoolNotFoundError, FileNotFoundError, "does not exist")  # fmt: skip
row("plot-suffix", lambda w: check_plot_path("x.jpg"), UsageError, ValueError, "must end in .png")
row("plot-dir", lambda w: check_plot_path(w["root"] / "no" / "x.png"), UsageError, ValueError,
    "does not exist")  # fmt: skip


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(("call", "error", "builtin", "match"), ROWS)
def test_api_bad_input(
    w: dict[str, Any],
    call: Call,
    error: type[BgcacheError],
    builtin: type[Exception],
    match: str,
) -> None:
    before = _tree(w["root"])
    with pytest.raises(BgcacheError) as info:
        call(w)
    exc = info.value
    assert type(exc) is error, (type(exc), exc)
    assert isinstance(exc, builtin) and isinstance(exc, BgcacheError)
    message = str(exc)
    assert match in message, (match, message)
    assert "\n" not in message, message  # one line, as the command line prints it
    assert _tree(w["root"]) == before  # nothing written or changed
    assert not (w["root"] / "never").exists()


def test_every_error_class_mixes_in_a_builtin() -> None:
    """``except ValueError`` (FileNotFoundError, LookupError...) must keep working: every
    BgcacheError but the base also derives from a builtin exception other than Exception."""
    plain = (BaseException, Exception)
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BgcacheError) and cls is not BgcacheError
    ]
    assert len(classes) >= 20
    for cls in classes:
        mixed = [
            base
            for base in cls.__mro__
            if base.__module__ == "builtins"
            and issubclass(base, BaseException)
            and base not in plain
        ]
        assert mixed, f"{cls.__name__} mixes in no builtin exception (ValueError, OSError...)"
        assert all(getattr(builtins, b.__name__) is b for b in mixed)


def test_every_error_class_is_raised_in_a_row_or_exempt() -> None:
    """The table names most error classes; the rest are raised by damage or the
    environment, which ``tests/test_faults.py`` and the store tests inject."""
    named = {p.values[1] for p in ROWS}
    environmental = {
        "CheckpointError",  # a base class
        "CorruptBlockError",  # damaged bytes: store and fault tests
        "DeviceMemoryError",  # a pass that does not fit into GPU memory: GPU tests
        "MissingDependencyError",  # torch/boto3/dask/matplotlib absent: test_cli, test_plot
        "OutputError",  # a plot that cannot be written: test_plot
        "PoolExhaustedError",  # an overlay share used up: test_overlay
        "PoolObjectError",  # links, pipes, devices, unreadable files: test_hostile_pools
        "PoolWriteError",  # read-only location, disk full: test_pool, test_faults
        "SchedulerError",  # an unreachable Dask scheduler: test_distributed
        "StorageServerError",  # a storage server that lies: test_dav_lies, test_grid, test_s3
    }
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, BgcacheError) and cls is not BgcacheError:
            assert cls in named or name in environmental, f"no bad-input row raises {name}"
