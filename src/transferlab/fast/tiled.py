"""A feed-forward stylizer run within the device's memory: batches split into chunks that fit, and an image
that alone does not fit stylized in overlapping tiles, cross-faded (``style/tiling.py``), or refused in one
line with the longest side that fits.

Tiling suits the per-style networks, whose output pixels depend on a bounded neighbourhood, with one
exception: instance norm's statistics, which each tile takes from itself. Tiles are therefore as large as
memory allows (a photo that needs tiling is cut into few). On a 200 x 160 test image, Johnson's network
with random weights, 128 px tiles differed from the whole image by 0.047 on average (max 0.28), 160 px
tiles by 0.026 (max 0.16); 128 px tiles given the whole image's statistics by 0.003 (max 0.06): nearly
all of the difference is the statistics.
AdaIN is refused instead: its output depends on the mean and standard deviation of the whole content's
features, so tiles decoded from their own statistics would each get a different transfer; doing it
right takes two passes (encode every tile, pool the statistics, decode every tile).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from transferlab.memory import Footprint, MemoryLimitError, probe_sides
from transferlab.style import tiling

log = logging.getLogger(__name__)

# Pixels neighbouring tiles share and cross-fade over (at most a quarter of a tile).
OVERLAP = 32
# The smallest tile worth running: below it the overlaps would be most of the work.
MIN_TILE = 16


class Bounded:
    """``stylize`` (``[N, 3, H, W] -> [N, 3, H, W]``) whose peak memory, ``measure()``, is kept within
    ``budget`` bytes; ``tile``: whether an image too large alone may be stylized in tiles. The footprint is
    measured on the first batch larger than the probes (smaller ones fit wherever the probes did)."""

    def __init__(
        self,
        stylize: Callable[[Tensor], Tensor],
        measure: Callable[[], Footprint],
        budget: int,
        min_side: int,
        tile: bool,
        device: str = "cpu",
    ) -> None:
        self.stylize, self.measure, self.budget, self.tile, self.device = stylize, measure, budget, tile, device
        self.min_side, self.min_tile = min_side, max(min_side, MIN_TILE)

    @functools.cached_property
    def footprint(self) -> Footprint:
        return self.measure()

    @functools.cached_property
    def tile_side(self) -> int:
        """The largest square tile that fits, its overlaps included."""
        return math.isqrt(self.footprint.largest_pixels(self.budget))

    def fits(self, height: int, width: int, count: int = 1) -> bool:
        pixels = count * height * width
        return pixels <= probe_sides(self.min_side)[1] ** 2 or self.footprint.peak(pixels) <= self.budget

    def check(self, path: Path, height: int, width: int) -> None:
        """Refuse, before anything is decoded, an image of ``height x width`` this run cannot stylize."""
        if self.fits(height, width) or (self.tile and self.tile_side >= self.min_tile):
            return
        longest = self.footprint.largest_side(self.budget, height, width)
        fix = f"free memory on {self.device}"
        if longest >= self.min_tile:
            fix = f"set task.size={longest} (the longest side that fits) or {fix}"
        need = self.footprint.peak(height * width)
        raise MemoryLimitError(
            f"image {path} at {width}x{height} px needs an estimated {need / 2**30:.1f} GiB at its peak but "
            f"{self.device} has {self.budget / 2**30:.1f} GiB to plan with; {fix}"
        )

    def __call__(self, batch: Tensor) -> Tensor:
        n, _, height, width = batch.shape
        if self.fits(height, width, n):
            return self.stylize(batch)
        if self.fits(height, width):
            per_chunk = max(1, self.footprint.largest_pixels(self.budget) // (height * width))
            return torch.cat([self.stylize(chunk) for chunk in batch.split(per_chunk)])
        return torch.cat([self.tiled(image[None]) for image in batch])

    def tiled(self, image: Tensor) -> Tensor:
        """One ``[1, 3, H, W]`` image stylized in overlapping tiles of at most ``tile_side`` px."""
        height, width = image.shape[-2:]
        overlap = min(OVERLAP, self.tile_side // 4)
        boxes = tiling.tile_boxes(height, width, self.tile_side, overlap)
        log.info("%dx%d px in %d tiles of %d px (memory)", width, height, len(boxes), self.tile_side)
        blender = tiling.Blender(height, width, overlap)
        for box in boxes:
            blender.add(self.stylize(tiling.crop(image, box).contiguous()), box)
        return blender.result()
