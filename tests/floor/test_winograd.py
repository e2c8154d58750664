"""Winograd convolutions compute what the plain convolution computes, forward and backward, and
step aside wherever they do not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg

from transferlab import backbone, winograd


def frozen_conv(c: int, k: int, bias: bool = True) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(c, k, 3, padding=1, bias=bias).requires_grad_(False)


@pytest.mark.parametrize("shape", [(1, 10, 12), (2, 7, 9), (1, 1, 1), (1, 2, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("one_row_bands", [False, True])
def test_output_and_input_gradient_match_the_plain_convolution(
    shape, channels_last: bool, bias: bool, one_row_bands: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(winograd, "MIN_POSITIONS", 0)  # the transforms' edge cases on tiny maps too
    if one_row_bands:
        monkeypatch.setattr(winograd, "BAND_BYTES", 1)
    n, h, w = shape
    conv = frozen_conv(256, 24, bias)
    fast = winograd.WinogradConv2d.of(conv)
    x = torch.randn(n, 256, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(n, 24, h, w)
    ours = fast(x.requires_grad_())
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    plain = F.conv2d(x, conv.weight, conv.bias, padding=1)
    (plain_grad,) = torch.autograd.grad(plain, x, grad)
    torch.testing.assert_close(ours, plain, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(ours_grad, plain_grad, rtol=1e-5, atol=2e-5)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def test_other_dtypes_autocast_and_trainable_weights_run_the_plain_convolution() -> None:
    conv = frozen_conv(256, 8)
    fast = winograd.WinogradConv2d.of(conv)
    x = torch.randn(1, 256, 6, 6, dtype=torch.float64)
    assert torch.equal(fast.double()(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    fast.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x.float()).dtype == torch.bfloat16
    fast.bias.requires_grad_(True)
    fast(x.float()).sum().backward()
    assert fast.bias.grad is not None


def test_small_maps_run_the_plain_convolution(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = winograd.WinogradConv2d.of(frozen_conv(256, 8))

    def refuse(*args: object) -> None:
        raise AssertionError("Winograd ran on a map below MIN_POSITIONS")

    monkeypatch.setattr(winograd._Winograd, "apply", refuse)
    fast(torch.randn(1, 256, 4, 6))  # 24 positions: direct
    with pytest.raises(AssertionError):
        fast(torch.randn(1, 256, 6, 8))  # 48: Winograd


def test_the_transformed_kernel_follows_the_weights() -> None:
    conv = frozen_conv(256, 8)
    fast = winograd.WinogradConv2d.of(conv)
    x = torch.randn(1, 256, 8, 8)
    fast(x)
    conv.weight.mul_(2)  # shared parameter, changed in place (as load_state_dict does)
    torch.testing.assert_close(fast(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-5, atol=2e-5)


def test_features_use_winograd_where_it_pays_and_keep_their_state_dict() -> None:
    features, _ = backbone.build_features("vgg19", None, fast_convs=True)
    fast = [m.in_channels for m in features if isinstance(m, winograd.WinogradConv2d)]
    assert fast and min(fast) == winograd.MIN_CHANNELS
    assert all(
        m.in_channels < winograd.MIN_CHANNELS
        for m in features
        if isinstance(m, nn.Conv2d) and not isinstance(m, winograd.WinogradConv2d)
    )
    assert list(features.state_dict()) == list(vgg.make_layers(vgg.cfgs["E"]).state_dict())


@pytest.mark.parametrize("hw", [(6, 6), (5, 6)])
def test_output_takes_an_in_place_relu(hw: tuple[int, int]) -> None:
    """VGGFeatures runs its ReLUs in place, which autograd forbids on a view a custom Function returns."""
    conv = frozen_conv(256, 8)
    x = torch.randn(1, 256, *hw, requires_grad=True)
    out = winograd.WinogradConv2d.of(conv)(x).relu_()
    (grad,) = torch.autograd.grad(out.sum(), x)
    (plain,) = torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias, padding=1).relu().sum(), x)
    torch.testing.assert_close(grad, plain, rtol=1e-5, atol=2e-5)
