"""What the flicker metric does not see: the pixels it skips, sharpness, and the loss paid for stability.

``flicker`` (flow.warping_error) is measured only where the consistency mask trusts the flow. A
method can lower it by holding those pixels to the previous result while the pixels the mask leaves out
(disocclusions, motion boundaries, the strip a pan uncovers at the edge) go wrong, and by blurring
(a blurred video warps onto itself with less error). So metrics.json reports beside it, per frame pair
or frame and averaged over the video (the first frame counts in the per-frame figures; it has no pair):

- ``skipped_share``: the share of pixels the consistency mask leaves out of ``flicker``;
- ``skipped_ssim``: SSIM (torchmetrics: Gaussian window 11, sigma 1.5, data range 1) between the
  video's frame and the independent stylization of the same frame, its map averaged over the skipped
  pixels only: 1 where the skipped pixels look as a frame stylized on its own does (``task.baseline``);
- ``sharpness`` (and ``sharpness_baseline``): the total variation of each frame (losses.total_variation:
  mean squared difference of neighbouring pixels); a video that blurs over time falls below its baseline;
- ``content_loss`` and ``style_loss`` (and ``..._baseline``): the weighted content and style terms of
  the perceptual loss (perceptual.py, the loss group's weights and the layers group's layers) of each
  frame against its content frame and the style image: what the video pays for its stability is its
  terms less the baseline's (``task.loss_terms``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from transferlab import backbone
from transferlab.groups import LossWeights
from transferlab.losses import total_variation
from transferlab.perceptual import PerceptualLoss, style_grams

Sums = dict[str, list[float]]  # name -> [sum, count]: summed over frames (and resumed runs), divided at the end


class LossTerms:
    """The weighted content and style terms of a frame against its content and the style images (several
    blended by ``style_weights``, over the whole frame: masks are not applied)."""

    def __init__(
        self,
        encoder: backbone.VGGFeatures,
        styles: list[Tensor],
        style_weights: list[float],
        content_layers: dict[str, float],
        style_layers: dict[str, float],
        weights: LossWeights,
    ) -> None:
        # Only the content and style terms are reported: no total variation to compute.
        self.perceptual = PerceptualLoss.of(encoder, content_layers, style_layers, replace(weights, tv=0.0))
        self.perceptual.set_styles(style_grams(encoder, styles, style_layers), style_weights)

    @torch.no_grad()
    def __call__(self, content: Tensor, *frames: Tensor) -> list[tuple[float, float]]:
        """(content term, style term) of each of ``frames``, stylizations of ``content`` (encoded once)."""
        self.perceptual.set_content(content.unsqueeze(0))
        terms = [self.perceptual(frame.unsqueeze(0)) for frame in frames]
        return [(float(t["loss/content"]), float(t["loss/style"])) for t in terms]


def skipped_ssim(result: Tensor, independent: Tensor, mask: Tensor) -> tuple[float, float]:
    """(sum of the SSIM map over the pixels ``mask`` ``[1, H, W]`` leaves out, their number)."""
    _, ssim_map = structural_similarity_index_measure(
        result.unsqueeze(0), independent.unsqueeze(0), data_range=1.0, return_full_image=True
    )
    skipped = 1 - mask
    return float((ssim_map[0].mean(0, keepdim=True) * skipped).sum()), float(skipped.sum())


def add(sums: Sums, name: str, value: float, count: float = 1.0) -> None:
    total = sums.setdefault(name, [0.0, 0.0])  # a run resumed from an older progress.json lacks the name
    total[0] += value
    total[1] += count


def measure(
    sums: Sums, frame: Tensor, result: Tensor, base: Tensor | None, mask: Tensor | None, terms: LossTerms | None
) -> dict[str, float]:
    """Add one frame's figures to ``sums`` and return them (the frame's points in TensorBoard): ``base`` is
    its independent stylization (None without ``task.baseline``), ``mask`` the nearest earlier frame's
    consistency mask (None on the first frame)."""
    parts = {"sharpness": (float(total_variation(result)), 1.0)}  # name -> (sum, count)
    if mask is not None:
        parts["skipped_share"] = (float(1 - mask.mean()), 1.0)
    if base is not None:
        parts["sharpness_baseline"] = (float(total_variation(base)), 1.0)
        if mask is not None:
            parts["skipped_ssim"] = skipped_ssim(result, base, mask)
    if terms is not None:
        judged = {"": result} | ({"_baseline": base} if base is not None else {})
        for suffix, (content, style) in zip(judged, terms(frame, *judged.values())):
            parts["content_loss" + suffix] = (content, 1.0)
            parts["style_loss" + suffix] = (style, 1.0)
    for name, part in parts.items():
        add(sums, name, *part)
    return {name: total / count for name, (total, count) in parts.items() if count}


def summary(sums: Sums) -> dict[str, float]:
    """Each figure's mean (``skipped_ssim``: 1.0 when no pixel was skipped)."""
    means = {name: total / count for name, (total, count) in sums.items() if count}
    if "skipped_ssim" in sums and not sums["skipped_ssim"][1]:
        means["skipped_ssim"] = 1.0
    return means


def describe(metrics: dict[str, float]) -> str:
    """One log line of the figures beside the flicker, those ``metrics`` holds."""
    parts = []
    if "skipped_share" in metrics:
        part = f"the flicker skips {metrics['skipped_share']:.1%} of the pixels"
        if "skipped_ssim" in metrics:
            part += f" (SSIM to the independent frames there {metrics['skipped_ssim']:.3f})"
        parts.append(part)
    if "sharpness_baseline" in metrics:
        parts.append(f"sharpness {metrics['sharpness']:.4g} (independent {metrics['sharpness_baseline']:.4g})")
    for term in ("content", "style"):
        if f"{term}_loss" in metrics:
            independent = metrics.get(f"{term}_loss_baseline")
            parts.append(
                f"{term} loss {metrics[f'{term}_loss']:.4g}"
                + (f" (independent {independent:.4g})" if independent is not None else "")
            )
    return "; ".join(parts)
