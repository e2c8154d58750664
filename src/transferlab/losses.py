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

import torch
import torch.nn.functional as F
from torch import Tensor


def gram_matrix(features: Tensor, mask: Tensor | None = None) -> Tensor:
    """``[B, C, H, W] -> [B, C, C]``, normalized by ``H * W``; in fp32 even under autocast,
    where bf16 sums of ``H * W`` products would lose the style signal.

    With ``mask`` (``[B or 1, 1, H, W]`` in [0, 1]) each position counts with its mask value:
    ``G = (F m)(F m)ᵀ / Σ m²``, the Gram matrix of the masked region alone (spatial control).
    """
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float()
        norm: Tensor | int = h * w
        if mask is not None:
            flat = flat * mask
            norm = mask.float().pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-8).view(-1, 1, 1)
        flat = flat.reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / norm


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(features, target)


def style_loss(features: Tensor, target_gram: Tensor, mask: Tensor | None = None) -> Tensor:
    """Gram distance of ``features`` (within ``mask``, if given) to a precomputed target Gram matrix."""
    return F.mse_loss(gram_matrix(features, mask), target_gram)


def total_variation(image: Tensor) -> Tensor:
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()
