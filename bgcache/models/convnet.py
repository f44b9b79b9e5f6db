"""The Belle II ConvNet generator: plain module (state_dict names of the basf2 payload)
and its fast inference form.

Architecture: Linear(96 -> 512*8*24), then five blocks of [conv5x5, BN, ReLU, nearest
upsample x2] and a final conv5x5 to one channel, tanh. Output (N, 1, 256, 768).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bgcache.models._layers import Staged, UpConv, fold_bn

LATENT_DIM = 96
_CHANNELS = (512, 512, 256, 128, 64, 32)


class ConvNet(nn.Module):
    """Plain ConvNet generator; ``state_dict`` matches ``PXDBackgroundGenerator_convnet``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(LATENT_DIM, 512 * 8 * 24)
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(_CHANNELS):
            # (cin, h, w) -> conv -> (cout, h, w) -> upsample -> (cout, 2h, 2w)
            layers += [
                nn.Conv2d(cin, cout, 5, 1, 2),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Upsample(scale_factor=2, mode="nearest"),
            ]
        layers.append(nn.Conv2d(_CHANNELS[-1], 1, 5, 1, 2))
        self.features = nn.Sequential(*layers)

    def pre_tanh(self, z: Tensor) -> Tensor:
        """Network output before the final tanh, (N, 1, 256, 768)."""
        return self.features(self.fc(z).view(-1, 512, 8, 24))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.pre_tanh(z))

    def final_conv(self) -> nn.Conv2d:
        """The last convolution (calibration of demo checkpoints shifts its bias)."""
        conv = self.features[20]
        assert isinstance(conv, nn.Conv2d)
        return conv


class FastConvNet(Staged):
    """Exact rewrite of :class:`ConvNet`.

    * fc and the first conv (+ its batch norm) are both affine with nothing in between, so
      they compose into one linear layer 96 -> 512*8*24, computed once here: the first
      5x5 conv (a quarter of the fast path's multiply-adds) disappears;
    * every other batch norm is folded into its conv, and every upsample + 5x5 conv runs
      as a 3x3 conv with 4x the channels at low resolution + pixel_shuffle, with the ReLU
      fused into the conv (it commutes with the shuffle).
    """

    #: images per forward call on CPU (keeps late tensors cache-sized; fixed: results
    #: depend on it at the float-rounding level)
    cpu_chunk = 4
    #: memory format on CPU (oneDNN runs these convs fastest in NHWC)
    cpu_memory_format = torch.channels_last
    STAGES = ("fc", "up1", "up2", "up3", "up4", "last")

    def stage_members(self) -> dict[str, tuple[str, ...]]:
        """fc (with the first conv composed in), the four upsampling convs, the last conv."""
        return {
            "fc": ("fc_w", "fc_b"),
            **{f"up{i + 1}": (f"ups.{i}",) for i in range(4)},
            "last": ("last",),
        }

    def __init__(self, plain: ConvNet) -> None:
        super().__init__()
        f = plain.features
        w0, b0 = fold_bn(
            f[0].weight,
            f[0].bias,
            f[1].running_mean,
            f[1].running_var,
            f[1].weight,
            f[1].bias,
            f[1].eps,
        )
        with torch.no_grad():
            # conv0(A z + c) = (conv0 o A) z + conv0(c): push fc's columns through conv0
            cols = plain.fc.weight.t().reshape(LATENT_DIM, 512, 8, 24)
            weight = F.conv2d(cols, w0, None, padding=2).reshape(LATENT_DIM, -1).t()
            bias = F.conv2d(plain.fc.bias.reshape(1, 512, 8, 24), w0, b0, padding=2).reshape(-1)
        self.fc_w = nn.Parameter(weight.contiguous(), requires_grad=False)
        self.fc_b = nn.Parameter(bias.contiguous(), requires_grad=False)
        ups: list[nn.Module] = []
        for i in (4, 8, 12, 16):
            conv, bn = f[i], f[i + 1]
            w, b = fold_bn(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps
            )
            ups.append(UpConv(w, b, relu=True))
        self.ups = nn.ModuleList(ups)
        self.last = UpConv(f[20].weight, f[20].bias)
        self.requires_grad_(False)

    def forward(self, z: Tensor) -> Tensor:
        z = z.to(self.fc_w.dtype)
        h = F.relu_(F.linear(z, self.fc_w, self.fc_b)).view(-1, 512, 8, 24)
        if self.last.weight.is_contiguous(memory_format=torch.channels_last):
            h = h.contiguous(memory_format=torch.channels_last)
        for up in self.ups:
            h = up(h)
        return torch.tanh(self.last(h).float())  # tanh and the threshold in float32
