"""Per-run quality metrics that are comparable across runs.

- ``ssim``: structural similarity of the output to the content, on luminance.
- ``gram_distances``: how far the output's style is from the style image's, per layer, on a
  fixed layer set with equal weights, so that runs with different ``layers.style`` choices
  or loss weights are measured with the same ruler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from transferlab import color, images
from transferlab.features import Encoder
from transferlab.losses import gram_matrix, style_loss
from transferlab.style.scene import Scene

# Wang et al. 2004: 11x11 Gaussian window, sigma 1.5; constants for data in [0, 1] (L = 1).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2

# The style layers of Gatys et al. 2016; present in both VGG16 and VGG19.
REFERENCE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalized 1-D Gaussian of ``size`` taps; the 2-D window is its outer product."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _as_luminance(image: Tensor) -> Tensor:
    """``[..., 3 or 1, H, W]`` -> ``[N, 1, H, W]`` float64 luminance."""
    if image.dim() < 3 or image.shape[-3] not in (1, 3):
        raise ValueError(f"ssim needs [..., 3, H, W] RGB or [..., 1, H, W] luminance; got {tuple(image.shape)}")
    image = image.double()
    y = color.luminance(image) if image.shape[-3] == 3 else image
    return y.reshape(-1, 1, *y.shape[-2:])


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Mean SSIM of the luminance of ``a`` and ``b`` (images in [0, 1], same size).

    Returns a scalar for ``[3, H, W]`` inputs, one value per image for batches. As in Wang et
    al.'s reference code, the window is applied without padding ("valid"), so images need at
    least 11 px per side. Computed in float64: the variances E[x²] - μ² cancel badly in float32
    (an error of about 1e-4 in SSIM on flat regions); returned as float32. Unlike their ``ssim.m`` we do not
    downsample large images first, so the score depends on resolution: compare runs at the same output size.
    """
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px; got {tuple(a.shape[-2:])}")
    ya, yb = _as_luminance(a), _as_luminance(b)
    g = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, ya.dtype, ya.device)

    def blur(x: Tensor) -> Tensor:
        # The Gaussian is separable: two 1-D passes cost 2x11 instead of 121 taps per pixel.
        return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mu_a, mu_b = blur(ya), blur(yb)
    var_a = blur(ya * ya) - mu_a * mu_a
    var_b = blur(yb * yb) - mu_b * mu_b
    cov = blur(ya * yb) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return ssim_map.mean(dim=(-3, -2, -1)).reshape(a.shape[:-3]).float()


def _batched(image: Tensor) -> Tensor:
    return image if image.dim() == 4 else image.unsqueeze(0)


def gram_distances(
    encoder: Callable[[Tensor], Mapping[str, Tensor]],
    image: Tensor,
    style: Tensor,
    layers: Sequence[str] = REFERENCE_LAYERS,
) -> dict[str, float]:
    """``{layer: style_loss(image, gram(style))}`` for each layer of the fixed reference set.

    Unweighted, independent of the run's ``layers.style`` and loss weights, so comparable
    across runs, but only across runs that use the same encoder weights (and pooling and
    normalization): the distances are in that network's feature units. ``image`` and
    ``style`` are ``[3, H, W]`` or ``[1, 3, H, W]`` on the encoder's device; their sizes
    may differ, since the Gram matrix is normalized by ``H * W``.
    """
    return distances_to(encoder, image, style_grams(encoder, style, layers))


def style_grams(
    encoder: Callable[[Tensor], Mapping[str, Tensor]], style: Tensor, layers: Sequence[str] = REFERENCE_LAYERS
) -> dict[str, Tensor]:
    """The Gram matrices of ``style`` on ``layers``: ``gram_distances``' targets, computed once per style."""
    with torch.no_grad():
        features = encoder(_batched(style))
    missing = [layer for layer in layers if layer not in features]
    if missing:
        raise ValueError(
            f"the encoder given to gram_distances does not return {missing}; "
            "build one on quality.REFERENCE_LAYERS: VGGFeatures(features, arch, REFERENCE_LAYERS, normalization)"
        )
    return {layer: gram_matrix(features[layer]) for layer in layers}


def distances_to(
    encoder: Callable[[Tensor], Mapping[str, Tensor]], image: Tensor, grams: Mapping[str, Tensor]
) -> dict[str, float]:
    """``gram_distances`` against ``style_grams`` computed before."""
    with torch.no_grad():
        out = encoder(_batched(image))
        return {layer: style_loss(out[layer], gram).item() for layer, gram in grams.items()}


def figures(
    reference: Encoder, image: Tensor, scene: Scene, grams: list[dict[str, Tensor]] | None = None
) -> dict[str, float]:
    """``ssim`` of ``image`` ``[3, H, W]`` (any scale of the scene) to the content, ``gram_<layer>`` to
    the (blend of) styles on the ``reference`` encoder's layers (VGG: ``REFERENCE_LAYERS``; another family:
    ``features.stage_ends``) and their mean ``gram_mean``; ``reference`` on the image's device; ``grams``:
    each style's ``style_grams``, when computed before."""
    content = scene.original if scene.original is not None else scene.content
    out = {"ssim": float(ssim(image, images.resize(content, tuple(image.shape[-2:]))))}
    seen = color.luminance_image(image) if scene.original is not None else image
    layers = reference.layers
    grams = grams or [style_grams(reference, style, layers) for style in scene.styles]
    distances = [distances_to(reference, seen, g) for g in grams]
    for layer in layers:
        out[f"gram_{layer}"] = sum(w * d[layer] for w, d in zip(scene.style_weights, distances))
    out["gram_mean"] = sum(out[f"gram_{layer}"] for layer in layers) / len(layers)
    return out
