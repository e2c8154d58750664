"""A vision-language pair of our own behind ``transferlab.textloss.VisionLanguage``, whose meaning is known: the
image tower reads an image's mean chromaticity, the text tower maps colour words into that space. With it, the
text losses must move an image's hue toward the colour a prompt names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

# Chromaticity (each channel minus the mean of the three) of the colours the text tower knows.
COLOURS = {"red": (1.0, -0.5, -0.5), "green": (-0.5, 1.0, -0.5), "blue": (-0.5, -0.5, 1.0)}
NEUTRAL = 0.1  # a constant last coordinate: grey images and colourless texts have a direction too


class ColourClip(nn.Module):
    input_size = 16

    def encode_image(self, images: Tensor) -> Tensor:
        mean = images.float().mean((-2, -1))
        chroma = mean - mean.mean(1, keepdim=True)
        return torch.cat([chroma, torch.full_like(mean[:, :1], NEUTRAL)], 1)

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        rows = []
        for prompt in prompts:
            chroma = torch.zeros(3)
            for word in prompt.lower().split():
                chroma += torch.tensor(COLOURS.get(word, (0.0, 0.0, 0.0)))
            rows.append(torch.cat([chroma, torch.tensor([NEUTRAL])]))
        return torch.stack(rows)


def redness(image: Tensor) -> float:
    """Mean red minus the mean of green and blue of ``image`` ``[3, H, W]``."""
    r, g, b = image.float().mean((-2, -1))
    return float(r - (g + b) / 2)


def blueness(image: Tensor) -> float:
    r, g, b = image.float().mean((-2, -1))
    return float(b - (r + g) / 2)
