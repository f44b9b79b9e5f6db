"""Which network precision a generator runs in, and why (no torch needed).

Precisions:

* ``fp32``: float32 everywhere, the exact reference (the fast path's rewrites are exact
  up to float rounding);
* ``bf16-mixed``: the bulk of the convolutions in bfloat16 on bf16 matrix hardware, the
  stages that decide whether a pixel fires (:data:`MIXED_FP32_STAGES`: the input layer,
  the last convolution, the tanh and the hit threshold) in float32. Needs the fast path;
* ``bf16`` and ``fp16``: the whole network in that type (explicit opt-in: they move the
  occupancy by percents, see docs/models.md);
* ``auto`` (the default of builds, ``generate`` and the overlay's fallback): ``bf16-mixed``
  where the device has bf16 matrix hardware and the model passed the fidelity gate
  (:data:`GATE_PASSED`), else ``fp32``. An existing pool keeps its own precision.

A reduced precision's pixels depend on the kernels the hardware runs (AMX tiles and
AVX512-BF16 dot products round differently), so a pool of one records the *device class*
it was made on (:func:`cpu_capabilities`, :func:`cuda_capabilities`), and a build that
extends it must run on the same class. fp32 pools record none (as before this existed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bgcache.errors import UsageError

#: Every value ``--precision`` takes; "auto" resolves to one of the others.
PRECISIONS = ("auto", "fp32", "bf16-mixed", "bf16", "fp16")
#: The precisions a generator actually runs in (and a pool records).
CONCRETE_PRECISIONS = PRECISIONS[1:]
#: Those that change pixels against fp32: a pool of one records its device class.
REDUCED_PRECISIONS = ("bf16-mixed", "bf16", "fp16")

#: Stages of each fast network that ``bf16-mixed`` keeps in float32 (the rest run in
#: bfloat16). Chosen by measurement (benchmarks/precision.py: the occupancy shift of each
#: stage alone in bf16; benchmarks/fidelity.py: the gate): the input layer (cheap; a shift
#: there every later layer amplifies) and the last convolution, whose output the tanh and
#: the hit threshold read. resnet also keeps its two full-resolution blocks: with only fc
#: and last in float32 it moved the occupancy by -0.16 % and failed the gate on the cluster
#: size (KS 0.00042 against 0.00034 between fp32 halves); with them it passes.
MIXED_FP32_STAGES: Mapping[str, tuple[str, ...]] = {
    "convnet": ("fc", "last"),
    "resnet": ("fc", "block4", "block5", "last"),
    "ieagan": ("cond", "out"),
}

#: Reduced precisions that passed the fidelity gate per model (docs/models.md, "The
#: fidelity gate"; benchmarks/fidelity.py, 200 keys of the demo checkpoints on cpu-amx):
#: only these may be chosen by "auto". ieagan's bf16-mixed failed it (cluster size KS
#: 0.0053 against 0.0019 between fp32 halves), so ieagan runs fp32 unless asked; plain
#: bf16 failed for every model (occupancy shifts of 1.3-2 %, the charge spectrum).
GATE_PASSED: Mapping[str, tuple[str, ...]] = {
    "convnet": ("bf16-mixed",),
    "resnet": ("bf16-mixed",),
    "ieagan": (),
}

# oneDNN's ISA levels, as its ONEDNN_MAX_CPU_ISA variable names them (a cap on what it
# dispatches to, which torch's CPU kernels obey; used here to judge what bf16 will run on)
_ISA_LEVEL = {
    "SSE41": 1,
    "AVX": 2,
    "AVX2": 3,
    "AVX2_VNNI": 3,
    "AVX2_VNNI_2": 3,
    "AVX512_CORE": 4,
    "AVX512_CORE_VNNI": 4,
    "AVX512_CORE_BF16": 5,
    "AVX512_CORE_FP16": 5,
    "AVX10_1_512": 5,
    "AVX512_CORE_AMX": 6,
    "AVX512_CORE_AMX_FP16": 6,
    "AVX10_1_512_AMX": 6,
    "AVX10_1_512_AMX_FP16": 6,
    "AVX10_2_512": 5,
    "AVX10_2_512_AMX_2": 6,
}
_CPU_CLASS = {
    6: ("cpu-amx", "AMX bf16 tiles"),
    5: ("cpu-avx512bf16", "AVX512-BF16 dot products"),
    4: ("cpu-avx512", "AVX-512 without bf16"),
    3: ("cpu-avx2", "AVX2 only"),
}
#: CUDA compute capability from which the GPU has bf16 tensor cores (Ampere).
CUDA_BF16_MAJOR = 8


@dataclass(frozen=True)
class DeviceCapabilities:
    """What a device offers reduced precision.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"``.
        device_class: the kernel family reduced-precision pixels depend on: ``cpu-amx``,
            ``cpu-avx512bf16``, ``cpu-avx512``, ``cpu-avx2``, ``cpu-baseline`` or
            ``cuda-smXY``.
        bf16_matrix: whether bf16 runs on matrix hardware (AMX or AVX512-BF16 on a CPU,
            tensor cores of compute capability >= 8.0 on a GPU).
        description: what was found, for people (``"AMX bf16 tiles"``...).
    """

    device_type: str
    device_class: str
    bf16_matrix: bool
    description: str


def cpu_capabilities(
    *,
    amx: bool,
    avx512_bf16: bool,
    avx512: bool,
    avx2: bool,
    max_isa: str | None = None,
) -> DeviceCapabilities:
    """The capabilities of a CPU from what torch reports of it (``torch.cpu._is_*``),
    capped by oneDNN's ``ONEDNN_MAX_CPU_ISA`` when it is set.

    Example:
        >>> cpu_capabilities(amx=True, avx512_bf16=True, avx512=True, avx2=True).device_class
        'cpu-amx'
        >>> caps = cpu_capabilities(amx=False, avx512_bf16=False, avx512=False, avx2=True)
        >>> caps.device_class, caps.bf16_matrix
        ('cpu-avx2', False)
        >>> cpu_capabilities(amx=True, avx512_bf16=True, avx512=True, avx2=True,
        ...                  max_isa="avx512_core_bf16").device_class
        'cpu-avx512bf16'
    """
    level = 6 if amx else 5 if avx512_bf16 else 4 if avx512 else 3 if avx2 else 1
    note = ""
    if max_isa:
        cap = _ISA_LEVEL.get(max_isa.strip().upper())
        if cap is not None and cap < level:
            level, note = cap, f" (capped by ONEDNN_MAX_CPU_ISA={max_isa.strip()})"
    device_class, description = _CPU_CLASS.get(level, ("cpu-baseline", "no AVX2"))
    return DeviceCapabilities("cpu", device_class, level >= 5, description + note)


def cuda_capabilities(major: int, minor: int, name: str = "") -> DeviceCapabilities:
    """The capabilities of a CUDA GPU of compute capability ``major.minor``.

    Example:
        >>> cuda_capabilities(9, 0, "NVIDIA H200").device_class
        'cuda-sm90'
        >>> cuda_capabilities(7, 5).bf16_matrix
        False
    """
    what = f"{name + ', ' if name else ''}compute capability {major}.{minor}"
    return DeviceCapabilities("cuda", f"cuda-sm{major}{minor}", major >= CUDA_BF16_MAJOR, what)


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`UsageError`."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)


def choose_precision(
    model: str, caps: DeviceCapabilities, *, optimize: bool = True
) -> tuple[str, str]:
    """What ``auto`` runs for ``model`` on a device: ``(precision, reason)``.

    Example:
        >>> amx = cpu_capabilities(amx=True, avx512_bf16=True, avx512=True, avx2=True)
        >>> choose_precision("convnet", amx)[0], choose_precision("synthetic", amx)[0]
        ('bf16-mixed', 'fp32')
        >>> choose_precision("convnet", amx, optimize=False)
        ('fp32', 'the plain forward pass (--no-optimize) is the fp32 reference')
    """
    if model not in MIXED_FP32_STAGES:
        return "fp32", f"{model} has no reduced precision"
    if not optimize:
        return "fp32", "the plain forward pass (--no-optimize) is the fp32 reference"
    where = f"{caps.device_class}: {caps.description}"
    if not caps.bf16_matrix:
        return "fp32", f"{where}, no bf16 matrix hardware"
    if "bf16-mixed" not in GATE_PASSED.get(model, ()):
        return "fp32", f"{where}, but {model} has not passed the bf16-mixed fidelity gate"
    return "bf16-mixed", f"{where}; {model} passed the bf16-mixed fidelity gate"


def resolve_precision(
    requested: str,
    model: str,
    caps: DeviceCapabilities,
    *,
    optimize: bool = True,
    pool_content: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """The precision a build or generator runs in, and why.

    An explicit precision is taken as it is. ``auto`` keeps the precision an existing pool
    records (its events must all come from one), else asks :func:`choose_precision`.

    Example:
        >>> avx2 = cpu_capabilities(amx=False, avx512_bf16=False, avx512=False, avx2=True)
        >>> resolve_precision("auto", "convnet", avx2)[0]
        'fp32'
        >>> resolve_precision("auto", "convnet", avx2, pool_content={"precision": "bf16-mixed"})
        ('bf16-mixed', "the pool's precision")
        >>> resolve_precision("bf16", "convnet", avx2)
        ('bf16', 'asked for')
    """
    check_precision(requested)
    if requested != "auto":
        return requested, "asked for"
    recorded = (pool_content or {}).get("precision")
    if recorded in CONCRETE_PRECISIONS:
        return str(recorded), "the pool's precision"
    return choose_precision(model, caps, optimize=optimize)


def fallback_precision(
    content: Mapping[str, Any], caps: DeviceCapabilities
) -> tuple[str, str | None]:
    """The precision an overlay's on-the-fly fallback runs for a pool, and a warning (or
    None) when it cannot be the pool's own on this device.

    The fallback's keys are never in the pool, so what must hold is the contract, not bit
    identity: a ``bf16-mixed`` pool's fallback on a device without bf16 matrix hardware runs
    ``fp32`` (equivalent within the fidelity gate, and 5-56x faster there than emulated
    bf16). Another precision, or the same on another device class, is kept, with a warning
    that its pixels may differ from what a build on the pool's class would store.

    Example:
        >>> avx2 = cpu_capabilities(amx=False, avx512_bf16=False, avx512=False, avx2=True)
        >>> fallback_precision({"precision": "bf16-mixed", "device_class": "cpu-amx"}, avx2)[0]
        'fp32'
        >>> fallback_precision({"precision": "fp32"}, avx2)
        ('fp32', None)
    """
    precision = str(content.get("precision", "fp32"))
    made_on = content.get("device_class")
    if precision not in REDUCED_PRECISIONS or made_on == caps.device_class:
        return precision, None
    if precision == "bf16-mixed" and not caps.bf16_matrix:
        return "fp32", (
            f"the pool is bf16-mixed, made on {made_on}; this device ({caps.device_class}) has "
            "no bf16 matrix hardware, so fallback events run in fp32 (equivalent within the "
            "fidelity gate)"
        )
    return precision, (
        f"the pool is {precision}, made on {made_on}; fallback runs it on {caps.device_class}, "
        "whose kernels round differently: fallback events may differ in a few pixels from what "
        f"a build on {made_on} would store"
    )
