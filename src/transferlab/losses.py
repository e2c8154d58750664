"""Pure loss functions of neural style transfer.

Our definitions (weights tuned for other codebases do not carry over unchanged):

- Gram matrix: ``G = F Fᵀ / (H W)`` for features ``F`` of shape ``C x (H W)``; the mean over
  positions of the channel outer products, so it does not grow with the image size.
- Style loss of a layer: mean squared difference between the two Gram matrices, i.e. the
  sum over the ``C x C`` entries divided by ``C²``. This is 4x Gatys et al.'s ``E_l``.
- Content loss: mean squared difference between two activations.
- Total variation: mean squared difference between neighbouring pixels, both directions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _flat(features: Tensor) -> Tensor:
    """``[B, C, H, W] -> [B, C, H W]`` without a copy: a transposed ``[B, H W, C]`` view for
    channels-last features."""
    b, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        return features.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)
    return features.reshape(b, c, h * w)


class _Gram(torch.autograd.Function):
    """``F Fᵀ * scale`` with a one-matmul backward. Autograd's generic ``bmm`` backward spends
    two matmuls (``G' F`` and ``G'ᵀ F``); since ``d(F Fᵀ) = dF Fᵀ + F dFᵀ``, the gradient is
    ``(G' + G'ᵀ) F * scale``: one ``C x C`` add and one matmul.

    It takes the ``[B, C, H, W]`` features, not a flattened view, so that the gradient it returns
    is a tensor of its own in the features' layout: autograd then adds the gradient of the
    layer's other consumer (the next conv) into it in place, instead of allocating a third
    full-size tensor for the sum."""

    @staticmethod
    def forward(ctx: Any, features: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(features)
        ctx.scale = scale
        flat = _flat(features)
        return torch.baddbmm(flat.new_empty(()), flat, flat.transpose(1, 2), beta=0, alpha=scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (features,) = ctx.saved_tensors
        flat, sym = _flat(features), grad + grad.transpose(1, 2)
        out = torch.empty_like(features)  # same memory format
        if flat.transpose(1, 2).is_contiguous():
            # Channels-last: multiply in the [B, HW, C] layout (sym is symmetric).
            torch.baddbmm(
                flat.new_empty(()), flat.transpose(1, 2), sym, beta=0, alpha=ctx.scale, out=_flat(out).transpose(1, 2)
            )
        else:
            torch.baddbmm(flat.new_empty(()), sym, flat, beta=0, alpha=ctx.scale, out=_flat(out))
        return out, None


def gram_matrix(features: Tensor, mask: Tensor | None = None) -> Tensor:
    """``[B, C, H, W] -> [B, C, C]``, normalized by ``H * W``; in fp32 even under autocast,
    where bf16 sums of ``H * W`` products would lose the style signal. Works on NCHW and
    channels-last features without copying them.

    With ``mask`` (``[B or 1, 1, H, W]`` in [0, 1]) each position counts with its mask value:
    ``G = (F m)(F m)ᵀ / Σ m²``, the Gram matrix of the masked region alone (spatial control).
    """
    h, w = features.shape[-2:]
    with torch.autocast(features.device.type, enabled=False):
        features = features.to(torch.promote_types(features.dtype, torch.float32))  # fp64 stays fp64
        if mask is None:
            return _Gram.apply(features, 1.0 / (h * w))
        features = features * mask
        norm = mask.to(features.dtype).pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-8).view(-1, 1, 1)
        return _Gram.apply(features, 1.0) / norm


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(features, target)


def style_loss(features: Tensor, target_gram: Tensor, mask: Tensor | None = None) -> Tensor:
    """Gram distance of ``features`` (within ``mask``, if given) to a precomputed target Gram matrix."""
    return F.mse_loss(gram_matrix(features, mask), target_gram)


def total_variation(image: Tensor) -> Tensor:
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()
