"""The Belle II ResNet generator: plain module (state_dict names of the basf2 payload)
and its fast inference form.

Architecture: Linear(96 -> 256*8*24), five residual blocks that each double the
resolution (BN, ReLU, upsample, conv3x3, BN, ReLU, conv3x3; shortcut upsample + conv1x1),
then BN, ReLU, conv3x3 to one channel, tanh. Output (N, 1, 256, 768).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bgcache.models._layers import Conv, Staged, UpConv3, add_upsampled_, fold_bn

LATENT_DIM = 96
_CHANNELS = (256, 256, 128, 64, 32, 16)


class ResidualBlock(nn.Module):
    """Pre-activation residual block that doubles height and width."""

    def __init__(self, ninput: int, noutput: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ninput, noutput, 1, 1, 0)
        self.norm1 = nn.BatchNorm2d(ninput)
        self.conv1 = nn.Conv2d(ninput, noutput, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(noutput)
        self.conv2 = nn.Conv2d(noutput, noutput, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(x))
        h = F.interpolate(h, mode="nearest", scale_factor=2)
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        return h + self.conv(F.interpolate(x, mode="nearest", scale_factor=2))


class ResNet(nn.Module):
    """Plain ResNet generator; ``state_dict`` matches ``PXDBackgroundGenerator_resnet``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(LATENT_DIM, 256 * 8 * 24)
        self.blocks = nn.ModuleList(
            ResidualBlock(cin, cout) for cin, cout in itertools.pairwise(_CHANNELS)
        )
        self.norm = nn.BatchNorm2d(16)
        self.conv = nn.Conv2d(16, 1, 3, 1, 1)

    def pre_tanh(self, z: Tensor) -> Tensor:
        """Network output before the final tanh, (N, 1, 256, 768)."""
        h = self.fc(z).view(-1, 256, 8, 24)
        for block in self.blocks:
            h = block(h)
        return self.conv(F.relu(self.norm(h)))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.pre_tanh(z))

    def final_conv(self) -> nn.Conv2d:
        """The last convolution (calibration of demo checkpoints shifts its bias)."""
        return self.conv


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Per-channel float64 (scale, shift) of an eval-mode BatchNorm2d."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps) * bn.weight.double()
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def _scaled(weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """Weights and bias of ``conv(x) * scale + shift`` (per output channel), as float32."""
    w = weight.double() * scale.view(-1, 1, 1, 1)
    return w.float(), (bias.double() * scale + shift).float()


class _FastBlock(nn.Module):
    """Exact rewrite of one residual block that takes and returns *normalised* tensors.

    The block receives ``xn = norm1(x)`` (folded into whatever produced x) and returns the
    next batch norm applied to its output (folded into conv2 and the shortcut). The 1x1
    shortcut acts on x = (xn - shift) / scale, i.e. on xn with rescaled weights, at low
    resolution (it commutes with nearest upsampling) and is broadcast-added onto the 2x2
    output phases; upsample + conv1 (+ norm2 folded) is one 2x2 convolution.
    """

    def __init__(self, block: ResidualBlock, next_scale: Tensor, next_shift: Tensor) -> None:
        super().__init__()
        in_scale, in_shift = _bn_affine(block.norm1)
        n2 = block.norm2
        w, b = fold_bn(
            block.conv1.weight,
            block.conv1.bias,
            n2.running_mean,
            n2.running_var,
            n2.weight,
            n2.bias,
            n2.eps,
        )
        self.up1 = UpConv3(w, b, relu=True)
        w2, b2 = _scaled(block.conv2.weight, block.conv2.bias, next_scale, next_shift)
        self.conv2 = Conv(w2, b2, padding=1)
        ws = block.conv.weight.double()[:, :, 0, 0]
        ws_in = ws / in_scale.view(1, -1)
        bs = block.conv.bias.double() - ws_in @ in_shift
        ws_out = ws_in * next_scale.view(-1, 1)
        self.short = Conv(ws_out.float()[:, :, None, None], (bs * next_scale).float(), padding=0)

    def forward(self, xn: Tensor) -> Tensor:
        xn = xn.to(self.conv2.weight.dtype)  # this block's dtype
        h = self.up1(F.relu(xn))
        return add_upsampled_(self.conv2(h), self.short(xn))


class FastResNet(Staged):
    """Exact fast form of :class:`ResNet` (same output up to float summation order).

    Every batch norm is folded into the convolutions (or the input linear layer) around
    it, so no elementwise normalisation pass remains; the upsampling convolutions run at
    low resolution. Needs every norm1 scale to be non-zero (true of any usable network);
    otherwise construction raises and the plain path must be used.
    """

    def __init__(self, plain: ResNet) -> None:
        super().__init__()
        scales = [_bn_affine(b.norm1)[0] for b in plain.blocks]
        if any(bool((s.abs() < 1e-30).any()) for s in scales):
            raise ValueError("a batch norm scale is zero: this network cannot be folded")
        s0, t0 = _bn_affine(plain.blocks[0].norm1)
        per_row = 8 * 24
        self.fc_w = nn.Parameter(
            (plain.fc.weight.double() * s0.repeat_interleave(per_row).view(-1, 1)).float(),
            requires_grad=False,
        )
        self.fc_b = nn.Parameter(
            (
                plain.fc.bias.double() * s0.repeat_interleave(per_row)
                + t0.repeat_interleave(per_row)
            ).float(),
            requires_grad=False,
        )
        nexts = [_bn_affine(b.norm1) for b in plain.blocks[1:]] + [_bn_affine(plain.norm)]
        self.blocks = nn.ModuleList(
            _FastBlock(b, ns, nt) for b, (ns, nt) in zip(plain.blocks, nexts, strict=True)
        )
        self.conv = Conv(plain.conv.weight, plain.conv.bias, padding=1)
        self.requires_grad_(False)

    #: images per forward call on CPU (keeps late tensors cache-sized; content-neutral)
    cpu_chunk = 2
    STAGES = ("fc", "block1", "block2", "block3", "block4", "block5", "last")

    def stage_members(self) -> dict[str, tuple[str, ...]]:
        """fc (with the first norm folded in), the five residual blocks, the last conv."""
        return {
            "fc": ("fc_w", "fc_b"),
            **{f"block{i + 1}": (f"blocks.{i}",) for i in range(5)},
            "last": ("conv",),
        }

    def forward(self, z: Tensor) -> Tensor:
        z = z.to(self.fc_w.dtype)
        h = F.linear(z, self.fc_w, self.fc_b).view(-1, 256, 8, 24)
        if self.conv.weight.is_contiguous(memory_format=torch.channels_last):
            h = h.contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            h = block(h)
        return torch.tanh(self.conv(F.relu_(h)).float())  # tanh and the threshold in float32
