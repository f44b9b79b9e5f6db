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
"""

from __future__ import annotations

import functools

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


def _use_fused(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and _fused_ops_work()


def conv2d_relu(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int) -> Tensor:
    """``relu(conv2d(x))`` in one pass where oneDNN can fuse it (bit-identical)."""
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
    return F.conv2d(x, weight, bias, padding=padding).add_(other)


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
        if self.relu:
            return F.pixel_shuffle(conv2d_relu(x, self.weight, self.bias, 1), 2)
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=1), 2)


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
        if self.relu:
            return conv2d_relu(x, self.weight, self.bias, self.padding)
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


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
    """Apply phase weights from :func:`upsample_conv3_phase_weights` (see there)."""
    n, _, h, w = x.shape
    cout = weight.shape[0] // 4
    # a 2x2 kernel with padding 1 reads the input padded by one: output (h+1, w+1)
    c = conv2d_relu(x, weight, bias, 1) if relu else F.conv2d(x, weight, bias, padding=1)
    c = c.view(n, cout, 2, 2, h + 1, w + 1)
    out = x.new_empty(n, cout, h, 2, w, 2)
    for a in range(2):
        for b in range(2):
            out[:, :, :, a, :, b] = c[:, :, a, b, a : a + h, b : b + w]
    return out.view(n, cout, 2 * h, 2 * w)


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
        return upconv3(x, self.weight, self.bias, self.relu)


def add_upsampled_(out: Tensor, low: Tensor) -> Tensor:
    """``out += upsample2x(low)`` in place without materialising the upsampled tensor."""
    n, c, h, w = low.shape
    view = out.view(n, c, h, 2, w, 2)
    view += low.view(n, c, h, 1, w, 1)
    return out
