"""Automatic strength maps (``task.strength_map=auto``): the spectral-residual saliency of Hou & Zhang (2007),
computed from the content image alone, with no downloaded weights, turned into a strength map under which the
salient subject keeps more of its content.

What it catches: compact objects that stand out from their surroundings by contrast (a bright or dark shape on a
textured or plain background, a small figure against the sky, text), because the log-amplitude spectrum of such a
scene deviates from its smooth local trend. What it misses: subjects that fill much of the frame (a close-up
portrait becomes "background" and its edges become salient), low-contrast subjects, and faces or people as such
(it knows nothing of semantics); busy textures draw saliency to themselves. The map is coarse (computed at
``SIDE`` px) and blurred, so it protects a region, not a precise outline; give a hand-made map for that.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from transferlab import fetch
from transferlab.errors import ConfigError

AUTO = "auto"
# Hou & Zhang's settings: the spectrum of the image at 64 px, a 3 x 3 local mean of the log amplitude, and a
# Gaussian of sigma 2.5 px (at 64 px) over the squared result.
SIDE = 64
MIN_SHORT_SIDE = 12  # a very thin image is not squeezed below this, so the blur has pixels to reflect over
SIGMA = 2.5
KERNEL = 11
# Softening: the most salient pixels keep this much of their content (strength 1 - KEEP), never all of it, so
# the style still reaches the subject and a wrong guess is not a hard hole in the stylization.
KEEP = 0.8


def spectral_residual(images: Tensor) -> Tensor:
    """``[N, 3, H, W]`` in [0, 1] to their saliency ``[N, 1, H, W]`` in [0, 1] (each image normalized by its own
    range; a flat image gets 0 everywhere)."""
    h, w = images.shape[-2:]
    scale = SIDE / max(h, w)
    small = (max(MIN_SHORT_SIDE, round(h * scale)), max(MIN_SHORT_SIDE, round(w * scale)))
    gray = F.interpolate(images.float().mean(1, keepdim=True), size=small, mode="area")
    spectrum = torch.fft.fft2(gray)
    log_amplitude = torch.log(spectrum.abs() + 1e-8)
    # The spectral residual: what the log amplitude holds beyond its local mean (the "expected" smooth spectrum).
    residual = log_amplitude - F.avg_pool2d(log_amplitude, 3, stride=1, padding=1, count_include_pad=False)
    saliency = torch.fft.ifft2(torch.polar(torch.exp(residual), spectrum.angle())).abs().square()
    saliency = gaussian_blur(saliency, [KERNEL, KERNEL], [SIGMA, SIGMA])
    saliency = F.interpolate(saliency, size=(h, w), mode="bilinear", align_corners=False)
    low = saliency.amin(dim=(-2, -1), keepdim=True)
    high = saliency.amax(dim=(-2, -1), keepdim=True)
    # A flat image's spectrum is its DC term alone: what comes back is rounding noise, not a subject.
    flat = gray.amax(dim=(-2, -1), keepdim=True) - gray.amin(dim=(-2, -1), keepdim=True) < 1 / 255
    return torch.where(flat, 0.0, ((saliency - low) / (high - low).clamp_min(1e-12)).clamp(0, 1))


def auto_strength(images: Tensor) -> Tensor:
    """The automatic strength map ``[N, 1, H, W]`` of ``[N, 3, H, W]`` content images: 1 (full style) where
    nothing is salient, down to ``1 - KEEP`` on the most salient pixels."""
    return 1 - KEEP * spectral_residual(images)


def strength_source(value: object, key: str) -> str | None:
    """A task's ``task.strength_map`` checked at its door: None, ``auto``, or an image path (kept as given) that
    exists, or a pinned URL (fetched by the task)."""
    if value is None or value == "":
        return None
    source = str(value)
    if source == AUTO or fetch.is_url(source) or fetch.has_scheme(source) or source.startswith("sample:"):
        return source  # a URL is checked when fetched; a bundled sample when resolved
    if not Path(source).expanduser().is_file():
        raise ConfigError(
            f"{key}={source!r} is not a file; give a grayscale image (0 keeps the content, 1 full style) "
            f"or {AUTO} (a map from the content's saliency)"
        )
    return source
