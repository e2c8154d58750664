"""Colour control: YIQ round trip, luminance-only transfer pieces, colour histogram matching."""

from __future__ import annotations

import pytest
import torch

from transferlab import color


def smooth_image(
    seed: int, h: int = 48, w: int = 64, low: float = 0.0, high: float = 1.0, batch: tuple[int, ...] = ()
) -> torch.Tensor:
    """Gradients plus noise, mapped into [low, high]; each channel different, so colours are correlated but not grey."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([x, y, (1 - x) * y]) * 0.6 + 0.4 * torch.rand(*batch, 3, h, w, generator=g)
    return low + (high - low) * base


def mean_cov(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.flatten(-2).double()
    mean = pixels.mean(-1)
    centred = pixels - mean.unsqueeze(-1)
    return mean, centred @ centred.transpose(-1, -2) / pixels.shape[-1]


def test_yiq_round_trip_batched() -> None:
    image = smooth_image(0, batch=(2, 2))
    assert torch.allclose(color.yiq_to_rgb(color.rgb_to_yiq(image)), image, atol=1e-6)
    yiq = torch.randn(3, 16, 16)
    assert torch.allclose(color.rgb_to_yiq(color.yiq_to_rgb(yiq)), yiq, atol=1e-5)


def test_grey_has_no_chroma_and_its_own_luminance() -> None:
    grey = torch.rand(1, 16, 16).expand(3, 16, 16)
    yiq = color.rgb_to_yiq(grey)
    assert torch.allclose(yiq[0], grey[0], atol=1e-6)
    assert yiq[1:].abs().max() < 1e-6
    assert color.luminance(grey).shape == (1, 16, 16)
    assert torch.allclose(color.luminance(grey), grey[:1], atol=1e-6)


def test_luminance_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        color.luminance(torch.rand(4, 8, 8))


def test_luminance_image_is_grey_with_content_statistics() -> None:
    style = smooth_image(1, low=0.05, high=0.95)
    content = smooth_image(2, low=0.35, high=0.65)
    lum = color.luminance_image(style, reference=content)
    assert lum.shape == style.shape
    assert torch.equal(lum[0], lum[1]) and torch.equal(lum[0], lum[2])
    y, yc = color.luminance(lum), color.luminance(content)
    # The style is squeezed into a narrower range here, so no clamping interferes.
    assert torch.allclose(y.mean(), yc.mean(), atol=1e-5)
    assert torch.allclose(y.std(unbiased=False), yc.std(unbiased=False), atol=1e-5)
    # Without a reference it is just Y.
    assert torch.allclose(color.luminance_image(style)[1:2], color.luminance(style).clamp(0, 1))


def test_luminance_image_is_writable() -> None:
    lum = color.luminance_image(smooth_image(3))
    lum.clamp_(0, 1)  # an expanded view would refuse this


def test_recombine_keeps_content_chroma() -> None:
    content = smooth_image(4, low=0.4, high=0.6)
    stylized = color.luminance_image(smooth_image(5, low=0.35, high=0.65))
    out = color.recombine(stylized, content)
    assert out.shape == content.shape
    assert out.min() > 0 and out.max() < 1  # mid-range: clamping does not touch it
    yiq_out, yiq_content = color.rgb_to_yiq(out), color.rgb_to_yiq(content)
    assert (yiq_out[1:] - yiq_content[1:]).abs().max() < 1e-4
    assert (yiq_out[:1] - color.luminance(stylized)).abs().max() < 1e-4


def test_recombine_accepts_y_batches_and_other_sizes() -> None:
    content = smooth_image(6, h=40, w=56, low=0.4, high=0.6)
    y = torch.full((2, 1, 20, 28), 0.5)
    out = color.recombine(y, content)
    assert out.shape == (2, 3, 20, 28)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(color.luminance(out), y, atol=1e-4)


def test_recombine_clamps() -> None:
    content = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 8, 8)
    out = color.recombine(torch.ones(1, 8, 8), content)  # saturated red at full luminance leaves the cube
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("method", ["sqrt", "cholesky"])
def test_linear_histogram_matching_matches_mean_and_covariance(method: str) -> None:
    source = smooth_image(7, h=64, w=48)
    reference = smooth_image(8, h=40, w=56)[[2, 0, 1]] * 0.5 + 0.2  # other size, other correlations
    matched = color.match_histogram(source, reference, method=method, clamp=False)
    assert matched.shape == source.shape
    mean_m, cov_m = mean_cov(matched)
    mean_r, cov_r = mean_cov(reference)
    assert torch.allclose(mean_m, mean_r, atol=1e-5)
    assert torch.allclose(cov_m, cov_r, atol=1e-4)


def test_sqrt_and_cholesky_differ_but_both_match() -> None:
    source, reference = smooth_image(9), smooth_image(10)[[1, 2, 0]]
    a = color.match_histogram(source, reference, "sqrt", clamp=False)
    b = color.match_histogram(source, reference, "cholesky", clamp=False)
    assert (a - b).abs().max() > 1e-3


def test_linear_matching_batched() -> None:
    source = smooth_image(11, batch=(2,))
    reference = torch.stack([smooth_image(12) * 0.5, smooth_image(13)[[2, 1, 0]] * 0.8 + 0.1])
    matched = color.match_histogram(source, reference, clamp=False)
    for i in range(2):
        mean_m, cov_m = mean_cov(matched[i])
        mean_r, cov_r = mean_cov(reference[i])
        assert torch.allclose(mean_m, mean_r, atol=1e-5) and torch.allclose(cov_m, cov_r, atol=1e-4)


def test_matching_a_flat_source_stays_finite() -> None:
    flat = torch.full((3, 16, 16), 0.3)
    matched = color.match_histogram(flat, smooth_image(14))
    assert torch.isfinite(matched).all()


def test_cdf_matching_matches_each_channel_histogram() -> None:
    source = smooth_image(15, h=32, w=32)
    reference = smooth_image(16, h=32, w=32)[[2, 0, 1]] ** 2
    matched = color.match_histogram(source, reference, method="cdf")
    # Same pixel count and distinct values: the matched values are exactly the reference's, per channel.
    assert torch.allclose(matched.flatten(1).sort().values, reference.flatten(1).sort().values, atol=1e-6)
    # Monotone per channel: the order of pixels is kept.
    assert torch.equal(matched.flatten(1).argsort(), source.flatten(1).argsort())


def test_cdf_matching_maps_equal_values_to_equal_values() -> None:
    source = (smooth_image(17) * 4).round() / 4  # only 5 levels per channel
    matched = color.match_histogram(source, smooth_image(18, h=30, w=30), method="cdf")
    for c in range(3):
        for level in source[c].unique():
            assert matched[c][source[c] == level].unique().numel() == 1


def test_unknown_method_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="sqrt"):
        color.match_histogram(smooth_image(0), smooth_image(1), method="pca")
