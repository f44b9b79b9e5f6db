"""The exact rewrites behind the fast GAN path, checked on small random problems."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from bgcache.models import _layers as L  # noqa: E402


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("k", [3, 5], ids=["3x3", "5x5"])
def test_upsample_conv_equals_low_res_conv_and_pixel_shuffle(k: int) -> None:
    x, w, b = _rand(2, 6, 7, 9), _rand(5, 6, k, k, seed=1), _rand(5, seed=2)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=k // 2)
    lw, lb = L.upsample_conv_weights(w, b)
    got = F.pixel_shuffle(F.conv2d(x, lw.double(), lb, padding=1), 2)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)


def test_upsample_conv3_equals_one_2x2_phase_conv() -> None:
    x, w, b = _rand(2, 4, 5, 8), _rand(3, 4, 3, 3, seed=1), _rand(3, seed=2)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)
    pw, pb = L.upsample_conv3_phase_weights(w, b)
    torch.testing.assert_close(L.upconv3(x, pw.double(), pb), want, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(
        L.upconv3(x, pw.double(), pb, relu=True), F.relu(want), rtol=1e-6, atol=1e-5
    )


def test_fold_bn_equals_conv_then_eval_batch_norm() -> None:
    x = _rand(2, 4, 6, 6).float()
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)
    bn = torch.nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.copy_(_rand(3, seed=3).float())
        bn.running_var.copy_(_rand(3, seed=4).float().abs() + 0.5)
        bn.weight.copy_(_rand(3, seed=5).float())
        bn.bias.copy_(_rand(3, seed=6).float())
        want = bn(conv(x))
        w, b = L.fold_bn(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps
        )
        torch.testing.assert_close(F.conv2d(x, w, b, padding=1), want, rtol=1e-5, atol=1e-5)


def test_add_upsampled_in_place() -> None:
    out, low = _rand(2, 3, 8, 10), _rand(2, 3, 4, 5, seed=1)
    want = out + F.interpolate(low, scale_factor=2, mode="nearest")
    assert torch.equal(L.add_upsampled_(out.clone(), low), want)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize(
    "shape", [(1, 16, 32, 48), (4, 64, 9, 13)], ids=["few-channels", "odd-size"]
)
def test_fused_ops_are_bit_identical_to_separate_ops(
    shape: tuple[int, ...], channels_last: bool
) -> None:
    assert L._fused_ops_work(), "oneDNN fused conv ops unavailable: the fast path loses its fusion"
    c = shape[1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = _rand(*shape).float().contiguous(memory_format=fmt)
    weight = _rand(c, c, 3, 3, seed=1).float().contiguous(memory_format=fmt)
    bias = _rand(c, seed=2).float()
    other = _rand(*shape, seed=3).float().contiguous(memory_format=fmt)
    with torch.inference_mode():
        assert torch.equal(
            L.conv2d_relu(x, weight, bias, 1), F.relu(F.conv2d(x, weight, bias, padding=1))
        )
        assert torch.equal(
            L.conv2d_add(x, other, weight, bias, 1), F.conv2d(x, weight, bias, padding=1) + other
        )
