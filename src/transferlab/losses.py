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


def gram_matrix(features: Tensor) -> Tensor:
    """``[B, C, H, W] -> [B, C, C]``, normalized by ``H * W``; in fp32 even under autocast,
    where bf16 sums of ``H * W`` products would lose the style signal."""
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float().reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(features, target)


def style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Gram distance of ``features`` to a precomputed target Gram matrix."""
    return F.mse_loss(gram_matrix(features), target_gram)


def total_variation(image: Tensor) -> Tensor:
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()
