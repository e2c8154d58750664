"""Colour control for style transfer (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

Two ways to keep the content's colours:

- Luminance-only transfer: run style transfer on luminance images (``luminance_image``), the
  style's luminance first matched to the content's mean and standard deviation, then put the
  content's chroma back (``recombine``).
- Colour histogram matching: recolour the style image to the content's colour statistics
  before the run (``match_histogram``).

Colour space: YIQ (NTSC 1953, FCC coefficients), as in the paper. Its Y row sums to 1 and its
I and Q rows sum to 0, so a grey pixel (r = g = b = v) has Y = v and no chroma; a luminance
image, Y repeated in R, G and B, therefore has the luminance Y again. The inverse matrix is
computed from the forward one (float64), not taken from the rounded published table, so the
round trip is exact to float precision.

All functions take RGB float tensors ``[..., 3, H, W]`` in [0, 1] (any leading batch dims)
and keep statistics per image, i.e. over the last two dims.
"""

from __future__ import annotations

import torch
from torch import Tensor

from transferlab import images

_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)

HISTOGRAM_METHODS = ("sqrt", "cholesky", "cdf")
# Added to covariance diagonals so that a flat (rank-deficient) image still has a finite transform.
_COV_EPS = 1e-5


def _check_rgb(image: Tensor, name: str = "image") -> None:
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"{name} must be [..., 3, H, W] RGB; got shape {tuple(image.shape)}")


def _mix(matrix: Tensor, image: Tensor) -> Tensor:
    """Apply a 3x3 colour matrix to the channel dim of ``[..., 3, H, W]``."""
    return torch.einsum("ij,...jhw->...ihw", matrix.to(image.dtype).to(image.device), image)


def rgb_to_yiq(image: Tensor) -> Tensor:
    """RGB ``[..., 3, H, W]`` -> YIQ; Y in [0, 1], I in about ±0.6, Q in about ±0.52."""
    _check_rgb(image)
    return _mix(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    """YIQ ``[..., 3, H, W]`` -> RGB, unclamped (the exact inverse of ``rgb_to_yiq``)."""
    _check_rgb(image)
    return _mix(_YIQ_TO_RGB, image)


def luminance(image: Tensor) -> Tensor:
    """RGB ``[..., 3, H, W]`` -> its Y channel ``[..., 1, H, W]``."""
    _check_rgb(image)
    weights = _RGB_TO_YIQ[0].to(image.dtype).to(image.device).view(3, 1, 1)
    return (image * weights).sum(dim=-3, keepdim=True)


def match_moments(source: Tensor, reference: Tensor, eps: float = 1e-8) -> Tensor:
    """Per image and channel, shift and scale ``source`` to the mean and standard deviation of
    ``reference`` (the paper's luminance matching: L' = σ_c/σ_s (L_s - μ_s) + μ_c)."""
    mu_s, std_s = source.mean(dim=(-2, -1), keepdim=True), source.std(dim=(-2, -1), keepdim=True, unbiased=False)
    mu_r, std_r = reference.mean(dim=(-2, -1), keepdim=True), reference.std(dim=(-2, -1), keepdim=True, unbiased=False)
    # A flat source (std 0) only gets shifted: there is no contrast to scale.
    return (source - mu_s) * (std_r / std_s.clamp_min(eps)) + mu_r


def luminance_image(image: Tensor, reference: Tensor | None = None) -> Tensor:
    """The 3-channel luminance image (Y in R, G and B) of ``image``, for feeding VGG.

    With ``reference`` (the content image, when ``image`` is the style), the luminance is first
    matched to the reference's luminance mean and std, as in the paper, so that the style's
    overall brightness and contrast do not override the content's. The result is clamped to
    [0, 1] like every image outside the backbone; this clips the tails of a strongly stretched
    style (a small change to its statistics).
    """
    y = luminance(image)
    if reference is not None:
        y = match_moments(y, luminance(reference))
    # A real copy, not an expanded view: callers may clamp or optimize it in place.
    return y.clamp(0, 1).repeat_interleave(3, dim=-3)


def recombine(stylized_luminance: Tensor, content: Tensor) -> Tensor:
    """Y of the stylized output with the I and Q (chroma) of ``content``, as RGB clamped to [0, 1].

    ``stylized_luminance`` may be the optimized 3-channel luminance image (its Y is taken, which
    also projects away any colour the optimizer let into it) or a ``[..., 1, H, W]`` Y channel.
    ``content`` is resized to the output's size when they differ (e.g. after a multi-scale run).
    """
    if stylized_luminance.dim() < 3 or stylized_luminance.shape[-3] not in (1, 3):
        raise ValueError(f"stylized_luminance must be [..., 1 or 3, H, W]; got {tuple(stylized_luminance.shape)}")
    y = stylized_luminance if stylized_luminance.shape[-3] == 1 else luminance(stylized_luminance)
    content = images.resize(content, tuple(y.shape[-2:]))
    chroma = rgb_to_yiq(content.to(y.dtype))[..., 1:, :, :]
    lead = torch.broadcast_shapes(y.shape[:-3], chroma.shape[:-3])
    y = y.expand(*lead, *y.shape[-3:])
    chroma = chroma.expand(*lead, *chroma.shape[-3:])
    return yiq_to_rgb(torch.cat([y, chroma], dim=-3)).clamp(0, 1)


# --- colour histogram matching ---------------------------------------------------------------


def _mean_cov(image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels ``[..., 3, N]`` (float64), their mean ``[..., 3, 1]`` and covariance ``[..., 3, 3]``."""
    pixels = image.flatten(-2).double()
    mean = pixels.mean(dim=-1, keepdim=True)
    centred = pixels - mean
    cov = centred @ centred.transpose(-1, -2) / pixels.shape[-1]
    return pixels, mean, cov


def _sym_power(cov: Tensor, power: float) -> Tensor:
    """``cov ** power`` of a symmetric positive semi-definite matrix, via its eigendecomposition."""
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(_COV_EPS) ** power
    return vectors @ torch.diag_embed(values) @ vectors.transpose(-1, -2)


def _linear_transform(cov_s: Tensor, cov_r: Tensor, method: str) -> Tensor:
    """A with ``A cov_s Aᵀ = cov_r``. ``sqrt``: A = cov_r^½ cov_s^-½ (the symmetric square roots of
    Image Analogies' colour matching, the variant the paper preferred: no preferred channel order,
    the smallest rotation). ``cholesky``: A = L_r L_s⁻¹ (cheaper, depends on the RGB channel order)."""
    eye = torch.eye(3, dtype=cov_s.dtype, device=cov_s.device)
    if method == "sqrt":
        return _sym_power(cov_r, 0.5) @ _sym_power(cov_s + _COV_EPS * eye, -0.5)
    chol_s = torch.linalg.cholesky(cov_s + _COV_EPS * eye)
    chol_r = torch.linalg.cholesky(cov_r + _COV_EPS * eye)
    inv_s = torch.linalg.solve_triangular(chol_s, eye.expand_as(chol_s), upper=False)
    return chol_r @ inv_s


def _match_linear(source: Tensor, reference: Tensor, method: str) -> Tensor:
    pixels, mu_s, cov_s = _mean_cov(source)
    _, mu_r, cov_r = _mean_cov(reference)
    matched = _linear_transform(cov_s, cov_r, method) @ (pixels - mu_s) + mu_r
    return matched.reshape(*matched.shape[:-1], *source.shape[-2:])


def _match_cdf(source: Tensor, reference: Tensor) -> Tensor:
    """Per-channel histogram matching: each source value goes to the reference value at its quantile.

    Equal source values get the same quantile (the middle of their run in sorted order), so
    8-bit images, which have many ties, map each level to one level, as a lookup table would.
    """
    src = source.flatten(-2)
    ref = reference.flatten(-2).to(src.dtype)
    lead = torch.broadcast_shapes(src.shape[:-1], ref.shape[:-1])
    src = src.expand(*lead, src.shape[-1]).contiguous()
    ref_sorted = ref.expand(*lead, ref.shape[-1]).sort(dim=-1).values
    src_sorted = src.sort(dim=-1).values
    n, m = src.shape[-1], ref_sorted.shape[-1]
    below = torch.searchsorted(src_sorted, src, right=False)
    upto = torch.searchsorted(src_sorted, src, right=True)
    quantile = (below + upto).to(src.dtype) / (2 * n)  # in (0, 1]
    # Position in the reference's sorted values, sample centres at (k + 0.5) / m; interpolate.
    pos = (quantile * m - 0.5).clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(m - 1)
    frac = pos - lo.to(pos.dtype)
    matched = ref_sorted.gather(-1, lo) * (1 - frac) + ref_sorted.gather(-1, hi) * frac
    return matched.reshape(*lead, *source.shape[-2:])


def match_histogram(source: Tensor, reference: Tensor, method: str = "sqrt", clamp: bool = True) -> Tensor:
    """Recolour ``source`` (the style image) to the colour statistics of ``reference`` (the content).

    ``sqrt`` / ``cholesky``: the paper's linear method, x' = A (x - μ_s) + μ_r with
    A Σ_s Aᵀ = Σ_r, so the mean and 3x3 RGB covariance become the reference's (see
    ``_linear_transform`` for how the two choices of A differ). ``cdf``: per-channel CDF
    matching, which matches each channel's whole histogram but not the cross-channel covariance.
    The two images may differ in size. With ``clamp`` the result is clipped to [0, 1], which
    changes its statistics slightly where the transform leaves the range.
    """
    _check_rgb(source, "source")
    _check_rgb(reference, "reference")
    if method not in HISTOGRAM_METHODS:
        raise ValueError(f"colour histogram method {method!r} is invalid; choose one of {list(HISTOGRAM_METHODS)}")
    matched = _match_cdf(source, reference) if method == "cdf" else _match_linear(source, reference, method)
    matched = matched.to(source.dtype)
    return matched.clamp(0, 1) if clamp else matched


def preserve(stylized: Tensor, content: Tensor, mode: str) -> Tensor:
    """A feed-forward stylizer's output with the content's colours kept after the fact (``mode``: ``luminance``,
    the content's chroma under the stylized luminance; ``histogram``, the content's colour statistics; ``none``)."""
    if mode == "luminance":
        return recombine(stylized, content)
    if mode == "histogram":
        return match_histogram(stylized, content)
    return stylized
