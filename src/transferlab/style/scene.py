"""The inputs of a style run, loaded and checked: content, styles with blend weights, masks,
strength map, initial image, and the colour mode that decides what VGG sees."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from transferlab import color, images, saliency
from transferlab.errors import ImageError
from transferlab.style import tiling
from transferlab.style.settings import Inputs


@dataclass
class Scene:
    """Tensors at the output size. ``content`` and ``styles`` are what VGG sees (luminance images
    in luminance mode); ``original`` is the content in colour, for putting colour back."""

    content: Tensor  # [3, H, W]
    styles: list[Tensor]  # [3, h, w] each, long side = output long side * style_scale
    style_weights: list[float]  # sum to 1
    masks: list[Tensor] | None  # [1, H, W] per style: where it applies
    strength: Tensor | None  # [1, H, W]: 0 keeps the content, 1 is full style
    init: Tensor  # [3, H, W]
    original: Tensor | None  # [3, H, W] colour content, in luminance mode only

    def to(self, device: torch.device | str) -> Scene:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            content=move(self.content),
            styles=[move(s) for s in self.styles],
            masks=None if self.masks is None else [move(m) for m in self.masks],
            strength=move(self.strength),
            init=move(self.init),
            original=move(self.original),
        )

    def crop(self, box: tiling.Box, init: Tensor) -> Scene:
        """The scene under ``box`` of the output, starting from ``init``; styles stay whole so that
        every tile matches the same Gram targets."""
        cut = lambda t: None if t is None else tiling.crop(t, box)  # noqa: E731
        return replace(
            self,
            content=cut(self.content),
            masks=None if self.masks is None else [cut(m) for m in self.masks],
            strength=cut(self.strength),
            init=tiling.crop(init, box),
            original=cut(self.original),
        )


def _map(path: Path, hw: tuple[int, int]) -> Tensor:
    """A grayscale map in [0, 1] resized to ``hw`` (maps of another size are resized)."""
    return images.resize(images.load_map(path), hw)


def load(inputs: Inputs, size: int) -> Scene:
    """Read and prepare every input at the output size (long side ``size``)."""
    content = images.load_image(inputs.content, size)
    hw = tuple(content.shape[-2:])
    style_size = max(32, round(size * inputs.style_scale))
    styles = [images.load_image(path, style_size) for path in inputs.styles]
    masks = [_map(path, hw) for path in inputs.style_masks] or None
    if masks is not None:
        uncovered = (torch.stack(masks).sum(0) <= 1e-3).float().mean().item()
        if uncovered > 0:
            raise ImageError(
                f"task.style_masks leave {uncovered:.1%} of the image uncovered (every mask is 0 there); "
                "extend a mask, or keep the content there with task.strength_map"
            )
    if inputs.strength_map == saliency.AUTO:
        strength = saliency.auto_strength(content.unsqueeze(0))[0]
    else:
        strength = _map(inputs.strength_map, hw) if inputs.strength_map else None
    if inputs.color == "histogram":
        styles = [color.match_histogram(s, content, method=inputs.histogram_method) for s in styles]
    if inputs.init == "content":
        init = content
    elif inputs.init == "style":
        init = images.resize(styles[0], hw)
    else:
        init = torch.rand_like(content)
    original = None
    if inputs.color == "luminance":
        original = content
        styles = [color.luminance_image(s, reference=content) for s in styles]
        content, init = color.luminance_image(content), color.luminance_image(init)
    return Scene(content, styles, list(inputs.style_weights), masks, strength, init, original)
