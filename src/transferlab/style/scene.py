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


def check_coverage(masks: list[Tensor] | None) -> None:
    """Refuse style masks that leave part of the image without any style (an optimization has no content
    to fall back on there)."""
    if masks is None:
        return
    uncovered = (torch.stack(masks).sum(0) <= 1e-3).float().mean().item()
    if uncovered > 0:
        raise ImageError(
            f"task.style_masks leave {uncovered:.1%} of the image uncovered (every mask is 0 there); "
            "extend a mask, or keep the content there with task.strength_map"
        )


def load(inputs: Inputs, size: int) -> Scene:
    """Read and prepare every input at the output size (long side ``size``)."""
    content = images.load_image(inputs.content, size)
    hw = tuple(content.shape[-2:])
    style_size = max(32, round(size * inputs.style_scale))
    styles = [images.load_image(path, style_size) for path in inputs.styles]
    masks = [_map(path, hw) for path in inputs.style_masks] or None
    check_coverage(masks)
    if inputs.strength_map == saliency.AUTO:
        strength = saliency.auto_strength(content.unsqueeze(0))[0]
    else:
        strength = _map(inputs.strength_map, hw) if inputs.strength_map else None
    return compose(
        content, styles, list(inputs.style_weights), masks, strength, inputs.init, inputs.color, inputs.histogram_method
    )


def compose(
    content: Tensor,
    styles: list[Tensor],
    style_weights: list[float],
    masks: list[Tensor] | None,
    strength: Tensor | None,
    init: str | Tensor,
    mode: str,
    histogram_method: str = "sqrt",
) -> Scene:
    """The scene of ``content`` (``[3, H, W]``, with masks and strength at its size) in colour mode ``mode``:
    ``histogram`` recolours the styles to the content, ``luminance`` makes VGG see luminance images (the
    styles' matched to the content's) and keeps the content for its colour. ``init``: content, noise, style
    (the first style, recoloured) or an image ``[3, H, W]`` (a video's warped previous frame)."""
    hw = tuple(content.shape[-2:])
    if mode == "histogram":
        styles = [color.match_histogram(s, content, method=histogram_method) for s in styles]
    if isinstance(init, Tensor):
        start = init
    elif init == "content":
        start = content
    elif init == "style":
        start = images.resize(styles[0], hw)
    else:
        start = torch.rand_like(content)
    original = None
    if mode == "luminance":
        original = content
        styles = [color.luminance_image(s, reference=content) for s in styles]
        content, start = color.luminance_image(content), color.luminance_image(start)
    return Scene(content, styles, style_weights, masks, strength, start, original)
