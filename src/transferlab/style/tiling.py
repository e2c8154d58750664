"""Geometry and blending for optimizing very large outputs in overlapping tiles.

A 4096 px output does not fit VGG plus L-BFGS history in memory at once; optimizing it in
tiles of at most ``tile`` px bounds the memory. The stylize task computes the Gram targets
once from the whole style image and optimizes each tile against them; this module says where
the tiles are (``tile_boxes``) and puts the optimized tiles back together (``Blender``) so
that seams are smooth and tiles cut from one image give that image back.

Boxes are ``(top, left, height, width)`` in pixels. Tiles are ``[..., C, h, w]`` tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Box = tuple[int, int, int, int]


def _check(tile: int, overlap: int) -> None:
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"tiling: tile={tile}, overlap={overlap} is invalid; need tile >= 1 and 0 <= overlap < tile")


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile starts along one axis: the fewest tiles of length ``tile`` whose
    neighbours overlap by at least ``overlap``; the first at 0 and the last flush with the end,
    so edge tiles are shifted inward rather than shrunk."""
    if size <= tile:
        return [0]
    count = -(-(size - overlap) // (tile - overlap))  # ceil: (count - 1) strides of <= tile - overlap
    # Floor division keeps every gap between starts <= ceil(stride) <= tile - overlap.
    return [i * (size - tile) // (count - 1) for i in range(count)]


def tile_boxes(height: int, width: int, tile: int, overlap: int) -> list[Box]:
    """Boxes ``(top, left, h, w)`` of at most ``tile`` px per side covering a ``height x width``
    image, row by row, neighbours overlapping by at least ``overlap`` px. Every box has the same
    size, ``min(tile, height) x min(tile, width)``; a side that fits in one tile is not split."""
    _check(tile, overlap)
    h, w = min(tile, height), min(tile, width)
    return [(top, left, h, w) for top in _starts(height, tile, overlap) for left in _starts(width, tile, overlap)]


def crop(image: Tensor, box: Box) -> Tensor:
    """The part of ``image`` ``[..., H, W]`` under ``box`` (a view)."""
    top, left, h, w = box
    return image[..., top : top + h, left : left + w]


def _ramp(length: int, overlap: int, start: bool, end: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1 inside, a raised-cosine ramp over ``overlap`` px at the ends that meet another tile.

    Sampled at pixel centres, ``sin²(π/2 · (d + 0.5) / overlap)`` for a pixel ``d`` px from the
    edge: never 0 (so every covered pixel has weight), flat at both ends of the ramp (no kink
    in the seam), and the falling ramp of one tile plus the rising ramp of a neighbour that
    overlaps it by exactly ``overlap`` px sum to 1 (sin² + cos²).
    """
    weights = torch.ones(length, dtype=dtype, device=device)
    if overlap == 0:
        return weights
    d = torch.arange(length, dtype=dtype, device=device) + 0.5
    rising = torch.sin(math.pi / 2 * (d / overlap).clamp(max=1)) ** 2
    if start:
        weights = torch.minimum(weights, rising)
    if end:
        weights = torch.minimum(weights, rising.flip(0))
    return weights


def blend_weights(
    h: int,
    w: int,
    overlap: int,
    edges: tuple[bool, bool, bool, bool] = (True, True, True, True),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Separable ``[h, w]`` mask: 1 inside, ramping down over ``overlap`` px at each of the
    ``edges`` (top, bottom, left, right) that touches another tile; edges on the image border
    keep weight 1, since nothing is blended there."""
    top, bottom, left, right = edges
    device = torch.device(device)
    rows = _ramp(h, overlap, top, bottom, dtype, device)
    cols = _ramp(w, overlap, left, right, dtype, device)
    return rows[:, None] * cols[None, :]


def inner_edges(box: Box, height: int, width: int) -> tuple[bool, bool, bool, bool]:
    """Which edges of ``box`` (top, bottom, left, right) lie inside the image, i.e. meet another tile."""
    top, left, h, w = box
    return top > 0, top + h < height, left > 0, left + w < width


class Blender:
    """Accumulates ``weight * tile`` and ``weight`` into two canvases; ``result`` divides them.

    One tile at a time, so a tiled run holds the canvases and one tile, not every tile. The
    normalization makes the result an exact weighted average: a constant stays constant, and
    tiles cut from one image give it back, whatever the overlaps are.
    """

    def __init__(self, height: int, width: int, overlap: int) -> None:
        self.height, self.width, self.overlap = height, width, overlap
        self.sum: Tensor | None = None
        self.weight: Tensor | None = None

    def add(self, tile: Tensor, box: Box) -> None:
        top, left, h, w = box
        if tuple(tile.shape[-2:]) != (h, w):
            raise ValueError(f"tile of size {tuple(tile.shape[-2:])} does not fit box {box}")
        if top < 0 or left < 0 or top + h > self.height or left + w > self.width:
            raise ValueError(f"box {box} is outside the {self.height}x{self.width} image")
        tile = tile.detach()
        if self.sum is None:
            self.sum = tile.new_zeros(*tile.shape[:-2], self.height, self.width)
            self.weight = tile.new_zeros(self.height, self.width)
        weights = blend_weights(h, w, self.overlap, inner_edges(box, self.height, self.width), tile.dtype, tile.device)
        crop(self.sum, box).add_(tile * weights)
        crop(self.weight, box).add_(weights)

    def result(self) -> Tensor:
        if self.sum is None or self.weight is None:
            raise ValueError("no tiles were added")
        if not (self.weight > 0).all():
            raise ValueError("the tiles do not cover the whole image")
        return self.sum / self.weight
