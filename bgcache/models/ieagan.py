"""The IEA-GAN generator: plain module (state_dict names of the Belle II model) and its
fast inference form.

BigGAN-deep style generator conditioned on the 40 sensor labels: a shared label
embedding goes through one relational-reasoning encoder block (self-attention over all
40 labels, so each image depends on every label being present) and is concatenated with
the 128-d latent; that 256-d vector drives class-conditional batch norms (ccbn) in 12
bottleneck blocks; spectral-normalised convolutions; output (N, 1, 256, 768).

Configuration of the Belle II model: G_ch=32, G_depth=2, dim_z=128, shared_dim=128,
bottom_width=4, H_base=3, hier=True, two attention heads, BN eps 1e-5, SN eps 1e-6, one
power iteration per forward in eval mode (computed once at load in the fast form).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bgcache.models._layers import (
    Conv,
    Staged,
    add_upsampled_,
    conv2d,
    conv2d_add,
    conv2d_relu,
    upconv3,
    upsample_conv3_phase_weights,
)

LATENT_DIM = 128
N_CLASSES = 40
SHARED_DIM = 128
COND_DIM = SHARED_DIM + LATENT_DIM
BN_EPS = 1e-5
SN_EPS = 1e-6
_CH = 32
_IN = tuple(_CH * m for m in (16, 16, 8, 8, 4, 2))
_OUT = tuple(_CH * m for m in (16, 8, 8, 4, 2, 1))


class _SpectralNorm:
    """Mixin: weight divided by its largest singular value, estimated by one power
    iteration from the stored vector ``u0`` (no update in eval mode)."""

    weight: Tensor
    u0: Tensor

    def _init_sn(self, num_outputs: int) -> None:
        assert isinstance(self, nn.Module)
        self.register_buffer("u0", torch.randn(1, num_outputs))
        self.register_buffer("sv0", torch.ones(1))

    def sigma(self) -> Tensor:
        """The singular-value estimate the weight is divided by."""
        w = self.weight.view(self.weight.size(0), -1)
        v = F.normalize(torch.matmul(self.u0, w), eps=SN_EPS)
        u = F.normalize(torch.matmul(v, w.t()), eps=SN_EPS)
        return torch.squeeze(torch.matmul(torch.matmul(v, w.t()), u.t()))

    def normalized_weight(self) -> Tensor:
        """``weight / sigma``, as used in every forward pass."""
        return self.weight / self.sigma()


class SNConv2d(nn.Conv2d, _SpectralNorm):
    """Conv2d with spectral normalisation."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1) -> None:
        nn.Conv2d.__init__(self, cin, cout, kernel_size, 1, padding)
        self._init_sn(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, 1, self.padding)


class SNLinear(nn.Linear, _SpectralNorm):
    """Linear layer with spectral normalisation."""

    def __init__(self, fin: int, fout: int, bias: bool = True) -> None:
        nn.Linear.__init__(self, fin, fout, bias)
        self._init_sn(fout)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class CCBN(nn.Module):
    """Class-conditional batch norm: stored statistics, gain 1 + W_g y and bias W_b y."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = SNLinear(COND_DIM, channels, bias=False)
        self.bias = SNLinear(COND_DIM, channels, bias=False)
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, False, 0.1, BN_EPS)
        return out * gain + bias


class BN(nn.Module):
    """Unconditional batch norm with stored statistics (the output layer's)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x, self.stored_mean, self.stored_var, self.gain, self.bias, False, 0.1, BN_EPS
        )


class MultiheadAttention(nn.Module):
    """Self-attention with one stacked qkv projection (per head: q, k, v contiguous)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.o_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv_proj(x).reshape(b, n, self.heads, 3 * self.head_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.chunk(3, dim=-1)
        att = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1)
        out = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(b, n, d)
        return self.o_proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block (dropout 0)."""

    def __init__(self, dim: int, heads: int, ff: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads)
        self.linear_net = nn.Sequential(
            nn.Linear(dim, ff), nn.Dropout(0.0), nn.ReLU(), nn.Linear(ff, dim)
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm1(x))
        return x + self.linear_net(self.norm2(x))


class RelationalReasoning(nn.Module):
    """One encoder block and a final layer norm over the label embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderBlock(SHARED_DIM, 2, SHARED_DIM)])
        self.norm = nn.LayerNorm(SHARED_DIM)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class GBlock(nn.Module):
    """BigGAN-deep bottleneck block: 1x1 down, two 3x3, 1x1 up; optional 2x upsample."""

    def __init__(self, cin: int, cout: int, upsample: bool) -> None:
        super().__init__()
        hidden = cin // 4
        self.cin, self.cout, self.upsample = cin, cout, upsample
        self.conv1 = SNConv2d(cin, hidden, 1, 0)
        self.conv2 = SNConv2d(hidden, hidden)
        self.conv3 = SNConv2d(hidden, hidden)
        self.conv4 = SNConv2d(hidden, cout, 1, 0)
        self.bn1 = CCBN(cin)
        self.bn2 = CCBN(hidden)
        self.bn3 = CCBN(hidden)
        self.bn4 = CCBN(hidden)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.conv1(F.relu(self.bn1(x, y)))
        h = F.relu(self.bn2(h, y))
        if self.cin != self.cout:
            x = x[:, : self.cout]
        if self.upsample:
            h = F.interpolate(h, scale_factor=2)
            x = F.interpolate(x, scale_factor=2)
        h = self.conv2(h)
        h = self.conv3(F.relu(self.bn3(h, y)))
        h = self.conv4(F.relu(self.bn4(h, y)))
        return h + x


class IEAGAN(nn.Module):
    """Plain IEA-GAN generator; ``state_dict`` matches the Belle II IEA-GAN layout."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Embedding(N_CLASSES, SHARED_DIM)
        self.RR_G = RelationalReasoning()
        self.linear = SNLinear(COND_DIM, _IN[0] * 4 * 4 * 3)
        blocks = []
        for stage in range(len(_IN)):
            blocks.append(nn.ModuleList([GBlock(_IN[stage], _IN[stage], upsample=False)]))
            blocks.append(nn.ModuleList([GBlock(_IN[stage], _OUT[stage], upsample=True)]))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(BN(_OUT[-1]), nn.ReLU(), SNConv2d(_OUT[-1], 1))

    def condition(self, labels: Tensor) -> Tensor:
        """Relational label embeddings (N, 128); N must hold all 40 labels."""
        return self.RR_G(self.shared(labels).unsqueeze(0)).squeeze(0)

    def pre_tanh(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Network output before the final tanh, (N, 1, 256, 768)."""
        if labels is None:
            labels = torch.arange(N_CLASSES, device=z.device).repeat(z.shape[0] // N_CLASSES)
        y = torch.cat([self.condition(labels), z], 1)
        h = self.linear(y).view(z.shape[0], -1, 4, 12)
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h, y)
        return self.output_layer(h)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return torch.tanh(self.pre_tanh(z, labels))

    def final_conv(self) -> SNConv2d:
        """The last convolution (calibration of demo checkpoints shifts its bias)."""
        conv = self.output_layer[2]
        assert isinstance(conv, SNConv2d)
        return conv


class _FastGBlock(nn.Module):
    """One GBlock for one image at a time, with its class-conditional norms folded.

    For a single image the ccbn gains are constants, so bn2, bn3 and bn4 (and their ReLUs)
    fold into conv1, conv2 and conv3 of that call; only bn1 (whose input is also the skip
    branch) stays an elementwise pass. conv2 after the upsample runs as one 2x2 conv at low
    resolution; the skip is added by broadcasting (upsampling) or fused into conv4.
    """

    def __init__(self, block: GBlock) -> None:
        super().__init__()
        self.cout, self.cin, self.upsample = block.cout, block.cin, block.upsample
        w2, b2 = block.conv2.normalized_weight(), block.conv2.bias
        if block.upsample:
            w2, b2 = upsample_conv3_phase_weights(w2, b2)
        for name, (w, b) in {
            "1": (block.conv1.normalized_weight(), block.conv1.bias),
            "2": (w2, b2),
            "3": (block.conv3.normalized_weight(), block.conv3.bias),
            "4": (block.conv4.normalized_weight(), block.conv4.bias),
        }.items():
            self.register_buffer(f"w{name}", w.detach().clone())
            self.register_buffer(f"b{name}", b.detach().clone())
        #: dtype the convolutions run in; the weights stay float32 masters, into which each
        #: image's norms are folded before the cast (one rounding, not two)
        self.compute_dtype = torch.float32

    def _folded(self, w: Tensor, b: Tensor, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
        # the bias stays float32: oneDNN adds it to the float32 accumulator
        return (w * scale.view(-1, 1, 1, 1)).to(self.compute_dtype), torch.addcmul(shift, b, scale)

    def forward(self, x: Tensor, ss: list[tuple[Tensor, Tensor]]) -> Tensor:
        """x: (1, cin, H, W); ss: per-channel (scale, shift) of bn1..bn4 for this image."""
        (s1, t1), (s2, t2), (s3, t3), (s4, t4) = ss
        dt = self.compute_dtype
        h = F.relu_(torch.addcmul(t1.view(1, -1, 1, 1), x, s1.view(1, -1, 1, 1)).to(dt))
        h = conv2d_relu(h, *self._folded(self.w1, self.b1, s2, t2), 0)
        if self.upsample:
            s3r, t3r = s3.repeat_interleave(4), t3.repeat_interleave(4)
            h = upconv3(h, *self._folded(self.w2, self.b2, s3r, t3r), relu=True)
        else:
            h = conv2d_relu(h, *self._folded(self.w2, self.b2, s3, t3), 1)
        h = conv2d_relu(h, *self._folded(self.w3, self.b3, s4, t4), 1)
        x = x.to(dt)
        if not self.upsample:
            return conv2d_add(h, x, self.w4.to(dt), self.b4, 0)
        out = conv2d(h, self.w4.to(dt), self.b4, 0)
        return add_upsampled_(out, x[:, : self.cout])


class FastIEAGAN(Staged):
    """Exact fast form of :class:`IEAGAN` for the 40 sensor labels.

    Spectral norms and the relational label embedding are computed once here; all 48
    class-conditional gains and biases of a batch come from one matrix product and are
    combined with the stored statistics into per-image scale/shift vectors, which the
    blocks fold into their convolutions (images run one at a time).
    """

    def __init__(self, plain: IEAGAN) -> None:
        super().__init__()
        with torch.no_grad():
            labels = torch.arange(N_CLASSES)
            self.register_buffer("label_embedding", plain.condition(labels).clone())
            self.register_buffer("linear_w", plain.linear.normalized_weight().clone())
            self.register_buffer("linear_b", plain.linear.bias.detach().clone())
            gains, biases, means, rstd, sizes = [], [], [], [], []
            for blocklist in plain.blocks:
                for block in blocklist:
                    for bn in (block.bn1, block.bn2, block.bn3, block.bn4):
                        gains.append(bn.gain.normalized_weight())
                        biases.append(bn.bias.normalized_weight())
                        means.append(bn.stored_mean)
                        rstd.append(torch.rsqrt(bn.stored_var + BN_EPS))
                        sizes.append(bn.stored_mean.numel())
            self.register_buffer("cond_w", torch.cat(gains + biases, 0).clone())
            self.register_buffer("bn_mean", torch.cat(means).clone())
            self.register_buffer("bn_rstd", torch.cat(rstd).clone())
            self.sizes = sizes
            self.blocks = nn.ModuleList(_FastGBlock(b) for bl in plain.blocks for b in bl)
            out_bn = plain.output_layer[0]
            scale = torch.rsqrt(out_bn.stored_var + BN_EPS) * out_bn.gain
            self.register_buffer("out_scale", scale.view(1, -1, 1, 1).clone())
            self.register_buffer(
                "out_shift", (out_bn.bias - out_bn.stored_mean * scale).view(1, -1, 1, 1).clone()
            )
            last = plain.output_layer[2]
            self.out_conv = Conv(last.normalized_weight(), last.bias, 1)
        self.requires_grad_(False)

    STAGES = ("cond", *(f"block{i + 1}" for i in range(12)), "out")

    def stage_members(self) -> dict[str, tuple[str, ...]]:
        """cond (label embedding, input linear, the conditional norms' gains), the twelve
        blocks, out (the output norm and conv)."""
        return {
            "cond": ("label_embedding", "linear_w", "linear_b", "cond_w", "bn_mean", "bn_rstd"),
            **{f"block{i + 1}": (f"blocks.{i}",) for i in range(12)},
            "out": ("out_scale", "out_shift", "out_conv"),
        }

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Tanh output for latents z (N, 128) of sensors ``labels`` (default: all 40, in order)."""
        n = z.shape[0]
        z = z.to(self.linear_w.dtype)
        emb = self.label_embedding if labels is None else self.label_embedding[labels]
        y = torch.cat([emb.repeat(n // emb.shape[0], 1), z], 1)
        h0 = F.linear(y, self.linear_w, self.linear_b).view(n, -1, 4, 12)
        if self.out_conv.weight.is_contiguous(memory_format=torch.channels_last):
            h0 = h0.contiguous(memory_format=torch.channels_last)
        gb = torch.matmul(y, self.cond_w.t())
        total = gb.shape[1] // 2
        scale = (1 + gb[:, :total]) * self.bn_rstd
        shift = gb[:, total:] - self.bn_mean * scale
        outs = []
        for i in range(n):
            scales = torch.split(scale[i], self.sizes)
            shifts = torch.split(shift[i], self.sizes)
            h = h0[i : i + 1]
            for k, block in enumerate(self.blocks):
                h = block(
                    h, list(zip(scales[4 * k : 4 * k + 4], shifts[4 * k : 4 * k + 4], strict=True))
                )
            h = F.relu_(torch.addcmul(self.out_shift, h.to(self.out_shift.dtype), self.out_scale))
            outs.append(torch.tanh(self.out_conv(h).float()))  # tanh and the threshold in float32
        return torch.cat(outs)
