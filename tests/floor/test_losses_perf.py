"""The fast paths (one-matmul Gram backward, channels-last VGG, in-place ReLUs) compute what the
plain formulas compute, and the estimate module's figures hold together."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transferlab import backbone, runtime
from transferlab.losses import gram_matrix, style_loss
from transferlab.runtime import RuntimeSettings
from transferlab.style import estimate


def plain_gram(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_gradcheck(channels_last: bool) -> None:
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(gram_matrix, (x.requires_grad_(),))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_matches_plain_formula_and_keeps_layout(channels_last: bool) -> None:
    x = torch.randn(1, 16, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = plain_gram(torch.randn(1, 16, 9, 7))
    (ours,) = torch.autograd.grad(style_loss(x.requires_grad_(), target), x)
    (plain,) = torch.autograd.grad(F.mse_loss(plain_gram(x), target), x)
    torch.testing.assert_close(gram_matrix(x), plain_gram(x))
    torch.testing.assert_close(ours, plain)
    assert ours.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_gram_is_fp32_under_autocast() -> None:
    x = torch.randn(1, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(x.bfloat16()).dtype == torch.float32


def test_features_and_gradients_match_plain_vgg() -> None:
    """VGGFeatures (truncated, channels-last, some ReLUs in place, Winograd convolutions from conv3_2
    on) against the plain convolutions of torchvision's stack in NCHW."""
    torch.manual_seed(0)
    features, norm = backbone.build_features("vgg16", None)
    reference = dict(zip(backbone.layer_names("vgg16"), features))
    layers = ["conv2_1", "relu1_2", "relu3_2", "relu4_1"]
    encoder = backbone.VGGFeatures(features, "vgg16", layers, norm)
    image = torch.rand(1, 3, 40, 36, requires_grad=True)
    ours = encoder(image)
    (grad_ours,) = torch.autograd.grad(sum(v.pow(2).mean() for v in ours.values()), image)

    outputs = {}
    x = backbone.Normalize(norm)(image)
    for name, module in reference.items():
        # Fresh non-in-place ReLUs: the plain reference must not share the encoder's in-place flags.
        if isinstance(module, torch.nn.ReLU):
            x = F.relu(x)
        elif isinstance(module, torch.nn.Conv2d):
            x = F.conv2d(x, module.weight, module.bias, padding=1)
        else:
            x = module(x)
        outputs[name] = x
        if name == "relu4_1":
            break
    (grad_plain,) = torch.autograd.grad(sum(outputs[k].pow(2).mean() for k in layers), image)
    for k in layers:
        torch.testing.assert_close(ours[k], outputs[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_ours, grad_plain, rtol=1e-4, atol=1e-6)


def test_evaluation_flops_match_hand_count() -> None:
    # VGG19 to relu1_2 at 8x8: conv1_1 (3->64) and conv1_2 (64->64), forward and input gradient;
    # one Gram matrix of 64 channels and its gradient.
    convs = 2 * 9 * (3 * 64 + 64 * 64) * 64
    gram = 2 * 64 * 64 * 64
    assert estimate.evaluation_flops("vgg19", ["relu1_2"], ["relu1_2"], 8, 8) == 2 * convs + 2 * gram


def test_estimate_grows_with_size_and_history() -> None:
    kwargs = dict(arch="vgg19", content_layers=["relu4_2"], style_layers=["relu1_1", "relu5_1"])
    small = estimate.estimate(size=(64, 64), style_size=(64, 64), **kwargs)
    large = estimate.estimate(size=(128, 128), style_size=(128, 128), **kwargs)
    deep = estimate.estimate(size=(64, 64), style_size=(64, 64), history_size=200, **kwargs)
    assert large.peak_bytes > small.peak_bytes and large.seconds > small.seconds
    assert deep.parts["optimizer"] - small.parts["optimizer"] == 2 * 100 * 3 * 64 * 64 * 4
    assert "GiB" in small.describe()


def test_a_process_that_keeps_freed_blocks_adds_four_of_the_largest_layer() -> None:
    kwargs = dict(
        arch="vgg19", content_layers=["relu4_2"], style_layers=["relu1_1"], size=(64, 96), style_size=(64, 96)
    )
    live, kept = estimate.estimate(**kwargs), estimate.estimate(heap_block_limit=math.inf, **kwargs)
    assert "heap" not in live.parts
    assert kept.peak_bytes - live.peak_bytes == kept.parts["heap"] == 4 * 64 * 64 * 96 * 4  # relu1_1: 64 channels
    fast = estimate.estimate(heap_block_limit=math.inf, fast_convs=True, **kwargs)
    assert fast.parts["heap"] - kept.parts["heap"] == estimate.WINOGRAD_SPARE


def test_a_stock_glibc_heap_keeps_spare_blocks_up_to_its_mmap_threshold() -> None:
    kwargs = dict(arch="vgg19", content_layers=["relu4_2"], style_layers=["relu1_1"], style_size=(64, 96))
    small = {"size": (64, 96), **kwargs}  # relu1_1: 1.5 MiB, under the threshold: kept as with keep_freed_memory
    assert (
        estimate.estimate(heap_block_limit=runtime.GLIBC_MMAP_THRESHOLD_MAX, **small).parts["heap"]
        == estimate.estimate(heap_block_limit=math.inf, **small).parts["heap"]
    )
    large = {"size": (384, 512), **kwargs}  # relu1_1: 48 MiB, above it: four spare blocks of the threshold's size
    stock = estimate.estimate(heap_block_limit=runtime.GLIBC_MMAP_THRESHOLD_MAX, **large)
    assert stock.parts["heap"] == 4 * runtime.GLIBC_MMAP_THRESHOLD_MAX
    assert RuntimeSettings(flush_denormal=True, keep_freed_memory=False, winograd=True).heap_block_limit("cuda") == 0


def test_winograd_kernels_estimate_is_what_the_encoder_holds() -> None:
    from transferlab import winograd

    layers = dict(content_layers=["relu4_2"], style_layers=[f"relu{i}_1" for i in range(1, 6)])
    features, norm = backbone.build_features("vgg19", None)
    encoder = backbone.VGGFeatures(features, "vgg19", [*layers["content_layers"], *layers["style_layers"]], norm)
    with torch.no_grad():
        encoder(torch.rand(1, 3, 32, 32))
    held = sum(m.transformed().nbytes for m in encoder.stack if isinstance(m, winograd.WinogradConv2d))
    est = estimate.estimate("vgg19", size=(32, 32), style_size=(32, 32), fast_convs="auto", **layers)
    assert est.parts["winograd kernels"] == held > 0
    assert "winograd kernels" not in estimate.estimate("vgg19", size=(32, 32), style_size=(32, 32), **layers).parts


def test_largest_size_fits_budget() -> None:
    kwargs = dict(arch="vgg19", content_layers=["relu4_2"], style_layers=["relu1_1"], history_size=10)
    budget = 200 * 2**20
    size = estimate.largest_size(budget, aspect=4 / 3, **kwargs)

    def fits(s):
        return estimate.estimate(size=(round(s * 3 / 4), s), style_size=(round(s * 3 / 4), s), **kwargs)

    assert size % 32 == 0
    assert fits(size).peak_bytes <= budget < fits(size + 32).peak_bytes
