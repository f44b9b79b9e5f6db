"""Exact inference rewrites shared by the GAN models (torch only).

* :func:`fold_bn` folds an eval-mode batch norm that follows a convolution into it.
* :func:`upsample_conv_weights` turns "nearest 2x upsample, then k x k conv (stride 1,
  padding k//2)" into one 3 x 3 convolution on the low-resolution input with 4x the
  output channels, followed by ``pixel_shuffle(2)``. Output pixel (2i+a, 2j+b) reads
  upsampled rows 2i+a+t-p, i.e. low rows i + floor((a+t-p)/2): the kernel taps that
  land on the same low-resolution row are summed. Mathematically exact; only the
  floating-point summation order changes.
* :func:`upsample_conv3_phase_weights` / :func:`upconv3`: for 3 x 3 kernels each output
  phase only needs a 2 x 2 window, so one 2 x 2 convolution gives all four phases (4/9 of
  the multiply-adds of the 3 x 3 form).
* :func:`conv2d_relu` / :func:`conv2d_add`: oneDNN's fused conv+ReLU and conv+add where
  available; bit-identical to the separate ops (checked once at run time), else those.
* :func:`add_upsampled_` adds a nearest-upsampled tensor without materialising it.
* :class:`Staged` lets a fast network run each of its named stages in its own dtype
  (``bf16-mixed``: the bulk of the convolutions in bfloat16, the stages that decide whether
  a pixel fires in float32); every stage casts its input to its own weights' dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def _fused_ops_work() -> bool:
    """Whether oneDNN's fused conv+relu / conv+add ops exist and agree bit for bit with
    the separate ops (checked once on a small problem)."""
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 8, 12, 20, generator=g)
        w = torch.randn(8, 8, 3, 3, generator=g)
        b = torch.randn(8, generator=g)
        other = torch.randn(2, 8, 12, 20, generator=g)
        with torch.inference_mode():
            relu = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
            add = op.binary(x, other, w, b, [1, 1], [1, 1], [1, 1], 1, "add", None, None, [], None)
            ok_relu = torch.equal(relu, F.relu(F.conv2d(x, w, b, padding=1)))
            ok_add = torch.equal(add, F.conv2d(x, w, b, padding=1) + other)
        return bool(ok_relu and ok_add)
    except (AttributeError, RuntimeError, TypeError):
        return False


class Staged(nn.Module):
    """A fast network made of named stages, each of which may run in its own dtype.

    Subclasses list their stages in order in :attr:`STAGES` and say in
    :meth:`stage_members` which attributes (submodules, parameters, buffers) each one owns.
    A stage's code casts its input to the dtype of its own weights (a no-op when they
    agree), so converting a stage's members is all it takes to run it in another dtype.

    In a reduced-precision stage the convolutions' biases stay float32 (oneDNN adds them
    to the float32 accumulator): rounding a bias to bf16 is a fixed shift of its channel,
    and the last convolution's alone moved convnet's occupancy by 2.2 % (measured). The
    weights' rounding is a fixed shift too, ``sum(dW * x)`` per output channel, whose mean
    :meth:`set_stage_dtypes` adds back to the float32 bias given each convolution's mean
    input (:meth:`conv_input_means`). A member module with a ``compute_dtype`` attribute
    keeps float32 master weights and is told the dtype instead (ieagan folds each image's
    norms into its weights in float32 first, then rounds once).
    """

    #: the stages, in forward order
    STAGES: tuple[str, ...] = ()

    def stage_members(self) -> Mapping[str, tuple[str, ...]]:
        """Attribute names (dotted) each stage owns."""
        raise NotImplementedError

    def _members(self) -> Iterator[tuple[str, str, nn.Module, str, object]]:
        """``(stage, dotted name, owning module, attribute, value)`` of every member."""
        for stage, names in self.stage_members().items():
            for name in names:
                owner_name, _, attr = name.rpartition(".")
                owner = self.get_submodule(owner_name) if owner_name else self
                yield stage, name, owner, attr, getattr(owner, attr)

    def _convs(self) -> Iterator[tuple[str, nn.Module]]:
        """The convolutions (modules with a 4-d ``weight`` and a ``bias``), by dotted name."""
        for _stage, name, _owner, _attr, obj in self._members():
            if not isinstance(obj, nn.Module):
                continue
            for sub, mod in obj.named_modules(prefix=name):
                w = getattr(mod, "weight", None)
                if (
                    isinstance(w, Tensor)
                    and w.dim() == 4
                    and getattr(mod, "bias", None) is not None
                ):
                    yield sub, mod

    def conv_input_means(self, run: Callable[[], object]) -> dict[str, Tensor]:
        """Per-channel mean input (float64) of every convolution while ``run()`` runs the
        network (calibration inputs)."""
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        hooks = []
        for name, mod in self._convs():

            def hook(_m: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
                x = args[0].double()
                sums[name] = sums.get(name, 0) + x.sum((0, 2, 3))
                counts[name] = counts.get(name, 0) + x.shape[0] * x.shape[2] * x.shape[3]

            hooks.append(mod.register_forward_pre_hook(hook))
        try:
            with torch.inference_mode():
                run()
        finally:
            for h in hooks:
                h.remove()
        return {k: v / counts[k] for k, v in sums.items()}

    def set_stage_dtypes(
        self,
        dtypes: Mapping[str, torch.dtype],
        input_means: Mapping[str, Tensor] | None = None,
    ) -> None:
        """Convert every stage to ``dtypes[stage]`` (float32 where not named) from float32.

        A convolution's weight takes the stage's dtype, its bias stays float32; with
        ``input_means`` (:meth:`conv_input_means`) the mean shift of the weights' rounding
        is added back to the bias.

        Raises:
            KeyError: a name in ``dtypes`` is not one of :attr:`STAGES`.
        """
        unknown = set(dtypes) - set(self.STAGES)
        if unknown:
            raise KeyError(f"unknown stages {sorted(unknown)}; stages: {', '.join(self.STAGES)}")
        convs = dict(self._convs())
        for stage, name, owner, attr, obj in self._members():
            dtype = dtypes.get(stage, torch.float32)
            if isinstance(obj, nn.Module) and hasattr(obj, "compute_dtype"):
                obj.compute_dtype = dtype
                continue
            if isinstance(obj, nn.Module):
                for sub, mod in obj.named_modules(prefix=name):
                    if sub in convs:
                        self._round_conv(mod, dtype, (input_means or {}).get(sub))
                    else:
                        for p in mod.parameters(recurse=False):
                            p.data = p.data.to(dtype)
                continue
            if isinstance(obj, nn.Parameter):
                obj.data = obj.data.to(dtype)
            elif isinstance(obj, Tensor):
                setattr(owner, attr, obj.to(dtype))  # a buffer: re-registered by name
            else:
                raise TypeError(f"stage member {name!r} is a {type(obj).__name__}")

    @staticmethod
    def _round_conv(mod: nn.Module, dtype: torch.dtype, mean: Tensor | None) -> None:
        weight, bias = mod.weight, mod.bias
        assert isinstance(weight, Tensor) and isinstance(bias, Tensor)
        rounded = weight.data.to(dtype)
        if mean is not None and dtype != torch.float32:
            lost = (weight.data.double() - rounded.double()).sum((2, 3)) @ mean.to(weight.device)
            bias.data = (bias.data.double() + lost).float()
        weight.data = rounded

    def stage_dtypes(self) -> dict[str, torch.dtype]:
        """The dtype each stage runs in now (that of its first member)."""
        out: dict[str, torch.dtype] = {}
        for stage, _name, _owner, _attr, obj in self._members():
            if stage in out:
                continue
            if isinstance(obj, nn.Module) and hasattr(obj, "compute_dtype"):
                out[stage] = obj.compute_dtype
            elif isinstance(obj, nn.Module):
                out[stage] = next(iter(obj.parameters())).dtype
            elif isinstance(obj, Tensor):
                out[stage] = obj.dtype
        return out


@functools.cache
def _float_bias_works() -> bool:
    """Whether oneDNN takes a float32 bias beside bfloat16 input and weights (it adds the
    bias to the float32 accumulator: no rounding of the bias itself), checked once."""
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 6, 10, generator=g).bfloat16()
        w = torch.randn(4, 8, 3, 3, generator=g).bfloat16()
        b = torch.tensor([0.1, -2.987, 1.2345, 100.5])
        with torch.inference_mode():
            y = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "none", [], "")
            ref = F.conv2d(x.float(), w.float(), b, padding=1)
        return bool(y.dtype == torch.bfloat16 and (y.float() - ref).abs().max() < 1.0)
    except (AttributeError, RuntimeError, TypeError):
        return False


def _mixed(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """A bf16 convolution with a float32 bias (bf16-mixed's stages)."""
    return bias is not None and x.dtype != bias.dtype and weight.dtype == x.dtype


def _mixed_conv(x: Tensor, weight: Tensor, bias: Tensor, padding: int, relu: bool) -> Tensor:
    if x.device.type == "cpu" and _float_bias_works():
        p = [padding, padding]
        attr = "relu" if relu else "none"
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, p, [1, 1], [1, 1], 1, attr, [], ""
        )
    # elsewhere (CUDA): the float32 bias added to the output in float32, then one rounding
    out = F.conv2d(x, weight, None, padding=padding).float().add_(bias.view(1, -1, 1, 1))
    return (F.relu_(out) if relu else out).to(x.dtype)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int) -> Tensor:
    """``conv2d(x)`` (stride 1); a bf16 one keeps a float32 bias unrounded where it can."""
    if _mixed(x, weight, bias):
        assert bias is not None
        return _mixed_conv(x, weight, bias, padding, relu=False)
    return F.conv2d(x, weight, bias, padding=padding)


def _use_fused(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and _fused_ops_work()


def conv2d_relu(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int) -> Tensor:
    """``relu(conv2d(x))`` in one pass where oneDNN can fuse it (bit-identical)."""
    if _mixed(x, weight, bias):
        assert bias is not None
        return _mixed_conv(x, weight, bias, padding, relu=True)
    if _use_fused(x):
        p = [padding, padding]
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, p, [1, 1], [1, 1], 1, "relu", [], ""
        )
    return F.relu_(F.conv2d(x, weight, bias, padding=padding))


def conv2d_add(
    x: Tensor, other: Tensor, weight: Tensor, bias: Tensor | None, padding: int
) -> Tensor:
    """``conv2d(x) + other`` in one pass where oneDNN can fuse it (bit-identical)."""
    if _use_fused(x) and other.shape[0] == x.shape[0]:
        p = [padding, padding]
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, weight, bias, p, [1, 1], [1, 1], 1, "add", None, None, [], None
        )
    return conv2d(x, weight, bias, padding).add_(other)


def fold_bn(
    weight: Tensor,
    bias: Tensor | None,
    mean: Tensor,
    var: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """Fold ``BN(conv(x))`` (eval mode) into conv weights and bias."""
    scale = torch.rsqrt(var.double() + eps)
    if gamma is not None:
        scale = scale * gamma.double()
    b = bias.double() if bias is not None else torch.zeros_like(mean, dtype=torch.float64)
    shift = (b - mean.double()) * scale
    if beta is not None:
        shift = shift + beta.double()
    w = weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    return w.float(), shift.float()


def upsample_conv_weights(weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Weights of the low-resolution 3x3 convolution equivalent to upsample2x + conv.

    Args:
        weight: (Cout, Cin, k, k) with odd k <= 5, applied with padding k // 2.
        bias: (Cout,) or None.

    Returns:
        (weight (4*Cout, Cin, 3, 3), bias (4*Cout,)) for ``conv2d(x, w, b, padding=1)``
        followed by ``pixel_shuffle(2)``.
    """
    cout, cin, k, k2 = weight.shape
    assert k == k2 and k % 2 == 1 and k <= 5, "odd square kernels up to 5x5 only"
    p = k // 2
    w64 = weight.double()
    out = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=torch.float64, device=weight.device)
    for a in range(2):
        for t in range(k):
            dy = (a + t - p) // 2 + 1
            for b in range(2):
                for s in range(k):
                    dx = (b + s - p) // 2 + 1
                    out[:, a, b, :, dy, dx] += w64[:, :, t, s]
    new_bias = None if bias is None else bias.repeat_interleave(4)
    return out.reshape(4 * cout, cin, 3, 3).float(), new_bias


class UpConv(nn.Module):
    """Low-resolution 3x3 conv with 4x channels + pixel_shuffle == upsample2x + conv
    (optionally followed by a ReLU, fused into the conv: it commutes with the shuffle)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, relu: bool = False) -> None:
        super().__init__()
        w, b = upsample_conv_weights(weight, bias)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if b is None else nn.Parameter(b, requires_grad=False)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.weight.dtype)  # the stage's own dtype (a no-op in one precision)
        if self.relu:
            return F.pixel_shuffle(conv2d_relu(x, self.weight, self.bias, 1), 2)
        return F.pixel_shuffle(conv2d(x, self.weight, self.bias, 1), 2)


class Conv(nn.Module):
    """A frozen convolution with explicit padding (weights already folded), optionally
    followed by a fused ReLU."""

    def __init__(
        self, weight: Tensor, bias: Tensor | None, padding: int, relu: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = (
            None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        )
        self.padding = padding
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.weight.dtype)
        if self.relu:
            return conv2d_relu(x, self.weight, self.bias, self.padding)
        return conv2d(x, self.weight, self.bias, self.padding)


def upsample_conv3_phase_weights(
    weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """2x2 phase kernels of "upsample2x then 3x3 conv (padding 1)".

    For a 3x3 kernel each output phase (a, b) reads only a 2x2 window of the low-resolution
    input: rows (i-1, i) for a=0 and (i, i+1) for a=1. Running one 2x2 convolution over the
    input padded by 1 gives every phase at once: phase (a, b) of output pixel (i, j) sits
    at position (i + a, j + b) of that result. 4/9 of the FLOPs of the 3x3 form.

    Returns:
        (weight (4*Cout, Cin, 2, 2) ordered (cout, a, b), bias (4*Cout,)).
    """
    cout, cin, k, _ = weight.shape
    assert k == 3, "3x3 kernels only"
    w64 = weight.double()
    out = torch.zeros(cout, 2, 2, cin, 2, 2, dtype=torch.float64, device=weight.device)
    # upsampled row 2i+a+t-1 -> low row i + (a+t-1)//2; window row r = (a+t-1)//2 + 1 - a
    for a in range(2):
        for t in range(3):
            r = (a + t - 1) // 2 + 1 - a
            for b in range(2):
                for s in range(3):
                    c = (b + s - 1) // 2 + 1 - b
                    out[:, a, b, :, r, c] += w64[:, :, t, s]
    new_bias = None if bias is None else bias.repeat_interleave(4)
    return out.reshape(4 * cout, cin, 2, 2).float(), new_bias


def upconv3(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
    """Apply phase weights from :func:`upsample_conv3_phase_weights` (see there). The output
    keeps the memory format of the convolution (NCHW, or NHWC = channels_last)."""
    n, _, h, w = x.shape
    cout = weight.shape[0] // 4
    # a 2x2 kernel with padding 1 reads the input padded by one: output (h+1, w+1)
    c = conv2d_relu(x, weight, bias, 1) if relu else conv2d(x, weight, bias, 1)
    channels_last = _is_nhwc(c)
    c = c.view(n, cout, 2, 2, h + 1, w + 1)  # splits the channel dim: NCHW and NHWC alike
    if not channels_last:
        out = x.new_empty(n, cout, h, 2, w, 2)
        for a in range(2):
            for b in range(2):
                out[:, :, :, a, :, b] = c[:, :, a, b, a : a + h, b : b + w]
        return out.view(n, cout, 2 * h, 2 * w)
    nhwc = x.new_empty(n, h, 2, w, 2, cout)
    for a in range(2):
        for b in range(2):
            nhwc[:, :, a, :, b, :] = c[:, :, a, b, a : a + h, b : b + w].permute(0, 2, 3, 1)
    return nhwc.view(n, 2 * h, 2 * w, cout).permute(0, 3, 1, 2)


def _is_nhwc(x: Tensor) -> bool:
    return (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (x.is_contiguous())
    )


class UpConv3(nn.Module):
    """Exact, cheaper form of nearest-upsample x2 followed by a 3x3 conv (padding 1),
    optionally followed by a ReLU (fused into the conv: it commutes with the gather)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, relu: bool = False) -> None:
        super().__init__()
        w, b = upsample_conv3_phase_weights(weight, bias)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if b is None else nn.Parameter(b, requires_grad=False)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        return upconv3(x.to(self.weight.dtype), self.weight, self.bias, self.relu)


def add_upsampled_(out: Tensor, low: Tensor) -> Tensor:
    """``out += upsample2x(low)`` in place without materialising the upsampled tensor
    (``out`` NCHW- or NHWC-contiguous; ``low`` may be a channel slice)."""
    n, c, h, w = low.shape
    if out.is_contiguous():
        view = out.view(n, c, h, 2, w, 2)
        view += low.view(n, c, h, 1, w, 1).to(out.dtype)
        return out
    view = out.permute(0, 2, 3, 1).view(n, h, 2, w, 2, c)  # channels_last: C innermost
    view += low.permute(0, 2, 3, 1).reshape(n, h, 1, w, 1, c).to(out.dtype)
    return out
