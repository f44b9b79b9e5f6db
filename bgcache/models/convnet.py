"""The Belle II ConvNet generator: plain module (state_dict names of the basf2 payload)
and its fast inference form.

Architecture: Linear(96 -> 512*8*24), then five blocks of [conv5x5, BN, ReLU, nearest
upsample x2] and a final conv5x5 to one channel, tanh. Output (N, 1, 256, 768).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from bgcache.models._layers import Conv, UpConv, fold_bn

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


class FastConvNet(nn.Module):
    """Exact rewrite: BN folded into convs, every upsample+conv as low-res conv + pixel_shuffle."""

    def __init__(self, plain: ConvNet) -> None:
        super().__init__()
        self.fc = nn.Linear(LATENT_DIM, 512 * 8 * 24)
        self.fc.load_state_dict(plain.fc.state_dict())
        f = plain.features
        w, b = fold_bn(
            f[0].weight,
            f[0].bias,
            f[1].running_mean,
            f[1].running_var,
            f[1].weight,
            f[1].bias,
            f[1].eps,
        )
        self.first = Conv(w, b, padding=2, relu=True)
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

    #: images per forward call on CPU (keeps late tensors cache-sized; content-neutral)
    cpu_chunk = 4

    def forward(self, z: Tensor) -> Tensor:
        h = self.first(self.fc(z).view(-1, 512, 8, 24))
        for up in self.ups:
            h = up(h)
        return torch.tanh(self.last(h))
