"""The pure ops of arbitrary style in one pass (as pytorch-AdaIN's ``function.py``): channel mean/std, AdaIN
(Huang & Belongie, 2017), the mean/std style loss, style codes and how several styles, masks, alpha and a
strength map combine in feature space. No parameters, no config, no files; the networks are in
``networks.py``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

EPS = 1e-5
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def mean_std(feat: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Channel-wise mean and standard deviation over space (biased variance, + eps), shape (N, C, 1, 1)."""
    if feat.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got shape {tuple(feat.shape)}")
    var, mean = torch.var_mean(feat, dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def mean_std_over(feats: Iterable[Tensor], eps: float = EPS) -> tuple[Tensor, Tensor]:
    """``mean_std`` of every position of every map in ``feats`` (``(N, C, H, W)`` each, any N, H, W) taken
    together, in one streaming pass (float64 sums): one set of content statistics for a whole clip (ReReVST's
    global feature sharing), so that AdaIN normalizes every frame alike."""
    total = squares = None
    count = 0
    for feat in feats:
        wide = feat.detach().double()
        part, part_sq = wide.sum(dim=(0, 2, 3)), wide.square().sum(dim=(0, 2, 3))
        total, squares = (part, part_sq) if total is None else (total + part, squares + part_sq)
        count += feat.shape[0] * feat.shape[2] * feat.shape[3]
    if total is None:
        raise ValueError("no feature maps to take statistics over")
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0)
    return mean.float().view(1, -1, 1, 1), (var + eps).sqrt().float().view(1, -1, 1, 1)


def adain(content_feat: Tensor, style_feat: Tensor, eps: float = EPS) -> Tensor:
    """Align the content features' channel mean/std to the style features' (same N and C)."""
    if content_feat.shape[:2] != style_feat.shape[:2]:
        raise ValueError(f"content {tuple(content_feat.shape)} and style {tuple(style_feat.shape)} differ in N or C")
    c_mean, c_std = mean_std(content_feat, eps)
    s_mean, s_std = mean_std(style_feat, eps)
    return adain_stats(content_feat, s_mean, s_std, c_mean, c_std)


def adain_stats(content_feat: Tensor, s_mean: Tensor, s_std: Tensor, c_mean=None, c_std=None) -> Tensor:
    """AdaIN with precomputed style statistics (a style's code computed once, reused per image)."""
    if c_mean is None or c_std is None:
        c_mean, c_std = mean_std(content_feat)
    return (content_feat - c_mean) / c_std * s_std + s_mean


def mean_std_terms(
    output_feats: dict[str, Tensor], style_feats: dict[str, Tensor], layers: Iterable[str] = STYLE_LAYERS
) -> dict[str, Tensor]:
    """Per layer, the style loss of the AdaIN paper: MSE(mean) + MSE(std), means over N and C."""
    terms = {}
    for layer in layers:
        om, os_ = mean_std(output_feats[layer])
        sm, ss = mean_std(style_feats[layer])
        terms[layer] = F.mse_loss(om, sm) + F.mse_loss(os_, ss)
    return terms


@dataclass(frozen=True)
class StyleCode:
    """A style's relu4_1 statistics, computed once and reused over many images or frames."""

    mean: Tensor  # (1, C, 1, 1)
    std: Tensor
    # The feature maps by layer that attention attends over (SANet, AdaAttN); AdaIN needs only the statistics.
    features: dict[str, Tensor] | None = None


def style_code(style_feat: Tensor, features: dict[str, Tensor] | None = None) -> StyleCode:
    """The code of a style whose relu4_1 map is ``style_feat``, keeping ``features`` for attention."""
    mean, std = mean_std(style_feat)
    return StyleCode(mean, std, features)


def adain_code(content_feat: Tensor, code: StyleCode) -> Tensor:
    return adain_stats(content_feat, code.mean, code.std)


def blend_masks(weights: list[float]) -> list[Tensor]:
    """Masks that blend styles everywhere by ``weights`` (>= 0, not all 0; normalized to sum to 1): the
    convex combination of the per-style targets, Huang & Belongie's style interpolation."""
    w = torch.tensor(weights, dtype=torch.float32)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"style weights must be >= 0 and not all zero, got {weights}")
    return list((w / w.sum()).reshape(-1, 1, 1, 1, 1))


def fit_map(m: Tensor, size: tuple[int, int], pad: tuple[int, int, int, int]) -> Tensor:
    """A mask or strength map ``[N, 1, h, w]`` of any size resized to the content's ``size`` and edge-padded as the
    content was (``pad`` in F.pad's order) before a network's stylize."""
    return F.pad(F.interpolate(m, size=size, mode="bilinear", align_corners=False), pad, mode="replicate")


def blend_targets(
    content_feat: Tensor,
    targets: list[Tensor],
    alpha: float = 1.0,
    masks: list[Tensor] | None = None,
    strength: Tensor | None = None,
) -> Tensor:
    """Features to decode from the per-style ``targets`` (each the content features aligned to one style:
    AdaIN, or a network's attention); with masks (N,1,H,W, soft, any size; ``blend_masks`` for weights) each
    style contributes where its mask is, normalized by the mask sum (where all masks are 0 the content stays);
    alpha and the strength map (0 content, 1 style) blend with the content features."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if masks is None:
        if len(targets) != 1:
            raise ValueError("several styles without masks: give masks (blend_masks for weights)")
        t = targets[0]
        coverage = torch.ones_like(content_feat[:, :1])
    else:
        if len(masks) != len(targets):
            raise ValueError("give one mask per style")
        masks = [F.interpolate(m, size=content_feat.shape[2:], mode="bilinear", align_corners=False) for m in masks]
        total = sum(masks)
        t = sum(m * target for m, target in zip(masks, targets))
        t = t / total.clamp_min(1e-8)
        coverage = total.clamp(0, 1)
    s = coverage * alpha
    if strength is not None:
        s = s * F.interpolate(strength, size=content_feat.shape[2:], mode="bilinear", align_corners=False)
    return s * t + (1 - s) * content_feat
