"""Quality metrics: SSIM on luminance, Gram distances on the fixed reference layers."""

from __future__ import annotations

import pytest
import torch

from transferlab import backbone
from transferlab.style import quality


def image(seed: int, h: int = 48, w: int = 64, batch: tuple[int, ...] = ()) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return (torch.stack([x, y, x * y]) * 0.7 + 0.3 * torch.rand(*batch, 3, h, w, generator=g)).clamp(0, 1)


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_ssim_of_an_image_with_itself_is_one() -> None:
    x = image(0)
    value = quality.ssim(x, x)
    assert value.shape == () and value.dtype == torch.float32
    assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_decreases_with_noise() -> None:
    x = image(1)
    values = [quality.ssim(x, noisy(x, sigma)).item() for sigma in (0.02, 0.05, 0.1, 0.3)]
    assert values == sorted(values, reverse=True)
    assert values[0] < 1 and values[-1] < 0.5


def test_ssim_is_symmetric() -> None:
    a, b = image(2), noisy(image(2), 0.1)
    assert quality.ssim(a, b).item() == pytest.approx(quality.ssim(b, a).item(), abs=1e-6)


def test_ssim_batches_and_luminance_input() -> None:
    a = image(3, batch=(2,))
    b = torch.stack([a[0], noisy(a[1], 0.2)])
    values = quality.ssim(a, b)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(1.0, abs=1e-6) and values[1] < 0.9
    # A 1-channel input is taken as luminance already: a grey image gives the same score as RGB.
    grey = image(4)[:1]
    assert quality.ssim(grey, noisy(grey, 0.1)).item() == pytest.approx(
        quality.ssim(grey.expand(3, -1, -1), noisy(grey, 0.1).expand(3, -1, -1)).item(), abs=1e-5
    )


def test_ssim_rejects_small_or_mismatched_images() -> None:
    with pytest.raises(ValueError, match="11x11"):
        quality.ssim(torch.rand(3, 8, 32), torch.rand(3, 8, 32))
    with pytest.raises(ValueError, match="same shape"):
        quality.ssim(torch.rand(3, 32, 32), torch.rand(3, 32, 40))


def test_ssim_of_a_flat_pair_follows_the_formula() -> None:
    # Two flat images: variances and covariance vanish, only the luminance term is left.
    a, b = torch.full((1, 16, 16), 0.2), torch.full((1, 16, 16), 0.6)
    c1 = quality.SSIM_C1
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert quality.ssim(a, b).item() == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def encoder() -> backbone.VGGFeatures:
    torch.manual_seed(0)
    features, normalization = backbone.build_features("vgg19", None)
    return backbone.VGGFeatures(features, "vgg19", quality.REFERENCE_LAYERS, normalization)


def test_gram_distances_per_reference_layer(encoder: backbone.VGGFeatures) -> None:
    style, other = image(6, 32, 32), image(7, 32, 40)
    same = quality.gram_distances(encoder, style, style)
    assert tuple(same) == quality.REFERENCE_LAYERS
    assert all(v == 0.0 for v in same.values())
    different = quality.gram_distances(encoder, torch.rand(1, 3, 32, 40), style)
    assert all(isinstance(v, float) and v > 0 for v in different.values())
    # Closer to the style than noise is: the ruler orders outputs sensibly at least here.
    closer = quality.gram_distances(encoder, other, style)
    assert sum(closer.values()) < sum(different.values())


def test_gram_distances_needs_every_reference_layer() -> None:
    features, normalization = backbone.build_features("vgg16", None)
    run_encoder = backbone.VGGFeatures(features, "vgg16", ["relu1_1", "relu3_1"], normalization)
    with pytest.raises(ValueError, match="build one on quality.REFERENCE_LAYERS"):
        quality.gram_distances(run_encoder, image(8, 32, 32), image(9, 32, 32))
    # The same layers are available from VGG16 too, with a subset on request.
    values = quality.gram_distances(run_encoder, image(8, 32, 32), image(9, 32, 32), layers=["relu1_1", "relu3_1"])
    assert set(values) == {"relu1_1", "relu3_1"}
