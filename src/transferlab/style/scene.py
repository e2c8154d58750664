"""The inputs of a style run, loaded and checked: content, styles with blend weights, masks,
strength map, initial image, and the colour mode that decides what VGG sees."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor

from transferlab import checks as config
from transferlab import color, fetch, images
from transferlab.errors import ConfigError
from transferlab.style import tiling

INITS = ("content", "noise", "style")
COLORS = ("none", "luminance", "histogram")


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


def as_list(value: object) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def check(task: DictConfig) -> None:
    """Counts and values of the style inputs, before any file is read."""
    styles = as_list(task.style)
    if not styles:
        raise ConfigError("task.style is empty; give one style image or a list: task.style=[a.jpg,b.jpg]")
    weights = as_list(task.style_weights)
    if weights and len(weights) != len(styles):
        raise ConfigError(f"task.style_weights has {len(weights)} values for {len(styles)} styles; give one per style")
    for i, w in enumerate(weights):
        config.non_negative(w, f"task.style_weights[{i}]")
    if weights and sum(weights) == 0:
        raise ConfigError("task.style_weights are all 0; give at least one style a positive weight")
    masks = as_list(task.style_masks)
    if masks and len(masks) != len(styles):
        raise ConfigError(f"task.style_masks has {len(masks)} masks for {len(styles)} styles; give one per style")
    config.choice(task.init, INITS, "task.init")
    config.choice(task.color, COLORS, "task.color")
    config.choice(task.histogram_method, color.HISTOGRAM_METHODS, "task.histogram_method")
    if not isinstance(task.style_scale, (int, float)) or task.style_scale <= 0:
        raise ConfigError(f"task.style_scale={task.style_scale!r} is invalid; it must be a number > 0")


def _image(source: str, key: str, size: int | None = None) -> Tensor:
    return images.load_image(fetch.resolve(str(source), key), size)


def _map(source: str, key: str, hw: tuple[int, int]) -> Tensor:
    """A grayscale map in [0, 1] resized to ``hw`` (maps of another size are resized)."""
    gray = images.load_image(fetch.resolve(str(source), key)).mean(dim=0, keepdim=True)
    return images.resize(gray, hw)


def load(task: DictConfig) -> Scene:
    """Read and prepare every input named by ``task`` at the output size ``task.size``."""
    content = _image(task.content, "task.content", task.size)
    hw = tuple(content.shape[-2:])
    style_size = max(32, round(task.size * task.style_scale))
    sources = as_list(task.style)
    styles = [
        _image(s, f"task.style[{i}]" if len(sources) > 1 else "task.style", style_size) for i, s in enumerate(sources)
    ]
    weights = [float(w) for w in as_list(task.style_weights)] or [1.0] * len(styles)
    masks = [_map(m, f"task.style_masks[{i}]", hw) for i, m in enumerate(as_list(task.style_masks))] or None
    if masks is not None:
        uncovered = (torch.stack(masks).sum(0) <= 1e-3).float().mean().item()
        if uncovered > 0:
            raise ConfigError(
                f"task.style_masks leave {uncovered:.1%} of the image uncovered (every mask is 0 there); "
                "extend a mask, or keep the content there with task.strength_map"
            )
    strength = _map(task.strength_map, "task.strength_map", hw) if task.strength_map else None
    if task.color == "histogram":
        styles = [color.match_histogram(s, content, method=task.histogram_method) for s in styles]
    if task.init == "content":
        init = content
    elif task.init == "style":
        init = images.resize(styles[0], hw)
    else:
        init = torch.rand_like(content)
    original = None
    if task.color == "luminance":
        original = content
        styles = [color.luminance_image(s, reference=content) for s in styles]
        content, init = color.luminance_image(content), color.luminance_image(init)
    return Scene(content, styles, [w / sum(weights) for w in weights], masks, strength, init, original)
