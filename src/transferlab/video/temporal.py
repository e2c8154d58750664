"""The two ways of stylizing a frame with temporal consistency.

``OptimizedFrames``: Gatys et al. per frame through the style wing's module, started from the
previous result warped by the flow and held near it by the temporal loss (Ruder et al., 2016), a
term this wing adds to the perceptual loss.
``BlendedFrames``: any feed-forward stylizer (a callable frame -> stylized frame, with the frame's
controls: video/controls.py), its output blended with the previous output warped by the flow where the
flow is reliable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transferlab import backbone, color
from transferlab.groups import LossWeights, OptimizerSettings
from transferlab.perceptual import PerceptualLoss, Term, style_grams
from transferlab.style.module import StyleTransfer
from transferlab.style.scene import compose

Stylizer = Callable[..., Tensor]  # [3, H, W] in [0, 1] (and the frame's context) -> [3, H, W] in [0, 1]


def combine(targets: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor] | None:
    """Long-term consistency: each earlier frame ``(warped, mask)``, nearest first, counts only where
    no nearer frame is reliable (Ruder et al.'s long-term masks), so the masks are disjoint and the
    sum of their temporal losses is one loss with the combined target and mask."""
    if not targets:
        return None
    covered = torch.zeros_like(targets[0][1])
    target = torch.zeros_like(targets[0][0])
    for warped, mask in targets:
        own = (mask - covered).clamp(min=0)
        target = target + own * warped
        covered = covered + own
    return target, covered


def initial_image(frame: Tensor, temporal: tuple[Tensor, Tensor] | None, fill: Tensor | None = None) -> Tensor:
    """Where the optimization of ``frame`` starts: the earlier results warped into it where the flow is
    reliable (``temporal``: combine's target and mask), and elsewhere ``fill``, the frame's independent
    stylization when it is computed anyway (``task.baseline``), else the content to repaint. At a
    disocclusion, a motion boundary or where the flow leaves the frame the warp holds a smear of the edge
    or of the occluder, which the few steps per frame, with no temporal term there, left as streaks.
    Measured on 48x64 clips at 8 steps a frame: from the independent result the skipped pixels come out
    closest to it and the style term lowest; from the content the style term is up to 3x the warped
    start's (the steps do not finish painting them), though the streaks are gone."""
    if temporal is None:
        return frame
    target, mask = temporal
    return target + (1 - mask) * (frame if fill is None else fill)  # combine's target is 0 there


def temporal_term(target: Tensor, mask: Tensor, weight: float) -> Term:
    """Ruder et al.'s temporal loss ``weight * mean(mask * (image - target)^2)``: ``target`` ``[3, H, W]``
    is the previous result warped by the flow, ``mask`` ``[1, H, W]`` its reliable pixels."""
    target, mask, weight = target.unsqueeze(0), mask.unsqueeze(0), float(weight)
    return lambda image: weight * (mask * (image - target).pow(2)).mean()


class OptimizedFrames:
    """Stylize frames by optimization with the style wing's ``StyleTransfer`` module, with the stylize task's
    styles (blended by weights or placed by masks), strength and colour mode (``style.scene.compose``)."""

    def __init__(
        self,
        encoder: backbone.VGGFeatures,
        styles: list[Tensor],
        content_layers: dict[str, float],
        style_layers: dict[str, float],
        weights: LossWeights,
        optimizer: OptimizerSettings,
        style_weights: list[float] | None = None,
        color_mode: str = "none",
    ) -> None:
        """``style_weights``: one per style, summing to 1 (None: equal)."""
        self.styles, self.optimizer, self.color = styles, optimizer, color_mode
        self.style_weights = style_weights or [1 / len(styles)] * len(styles)
        self.perceptual = PerceptualLoss.of(encoder, content_layers, style_layers, weights)
        # The same for every frame: once. A colour mode matches the styles to each frame, so they are per frame.
        self.grams = style_grams(encoder, styles, style_layers) if color_mode == "none" else None

    def __call__(
        self,
        frame: Tensor,
        steps: int,
        init: Tensor,
        temporal: tuple[Tensor, Tensor] | None,
        weight: float,
        masks: list[Tensor] | None = None,
        strength: Tensor | None = None,
    ) -> Tensor:
        scene = compose(frame, self.styles, self.style_weights, masks, strength, init, self.color)
        if temporal is not None and self.color == "luminance":  # VGG and the loss see luminance images
            temporal = (color.luminance_image(temporal[0]), temporal[1])
        extra = {"loss/temporal": temporal_term(*temporal, weight)} if temporal is not None and weight > 0 else None
        perceptual = self.perceptual.like(extra)
        module = StyleTransfer(perceptual, scene, self.optimizer, [(1.0, steps)], gram_targets=self.grams)
        module.prepare_scale()
        optimizer = module.configure_optimizers()
        for _ in range(steps):
            module.step(optimizer, Tensor.backward)
        return module.output()


class BlendedFrames:
    """``stylizer(frame, *context)`` blended with the previous output warped into this frame:
    ``mask * (blend * warped + (1 - blend) * out) + (1 - mask) * out``. Returns the blended frame and
    the network's own output, which is what independent per-frame stylization gives (computed once).
    ``context``: what the stylizer takes besides the frame (the frame's maps, video/controls.py)."""

    def __init__(self, stylizer: Stylizer, blend: float) -> None:
        self.stylizer, self.blend = stylizer, blend

    @torch.no_grad()
    def __call__(self, frame: Tensor, temporal: tuple[Tensor, Tensor] | None, *context: Any) -> tuple[Tensor, Tensor]:
        out = self.stylizer(frame, *context).clamp(0, 1)
        if temporal is None or self.blend == 0:
            return out, out
        warped, mask = temporal
        return mask * (self.blend * warped + (1 - self.blend) * out) + (1 - mask) * out, out
