"""Tiling: box geometry, blend weights, and blending tiles back into one image."""

from __future__ import annotations

import math

import pytest
import torch

from transferlab.style import tiling

CASES = [(128, 96, 48, 8), (100, 37, 32, 5), (64, 64, 64, 16), (30, 20, 32, 8), (97, 129, 40, 0), (200, 33, 33, 32)]


def axis_starts(boxes: list[tiling.Box], axis: int) -> list[int]:
    return sorted({box[axis] for box in boxes})


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), CASES)
def test_boxes_cover_the_image_with_full_size_overlapping_tiles(
    height: int, width: int, tile: int, overlap: int
) -> None:
    boxes = tiling.tile_boxes(height, width, tile, overlap)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for box in boxes:
        top, left, h, w = box
        assert (h, w) == (min(tile, height), min(tile, width))  # shifted inward, never shrunk
        assert top >= 0 and left >= 0 and top + h <= height and left + w <= width
        tiling.crop(covered, box).add_(1)
    assert (covered > 0).all()
    for axis, size in ((0, height), (1, width)):
        starts = axis_starts(boxes, axis)
        length = min(tile, size)
        assert starts[0] == 0 and starts[-1] + length == size
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap >= overlap px
        # The fewest tiles that can do it.
        assert len(starts) == (1 if size <= tile else math.ceil((size - overlap) / (tile - overlap)))


def test_small_image_is_one_tile() -> None:
    assert tiling.tile_boxes(20, 30, 64, 16) == [(0, 0, 20, 30)]


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0), (16, 16), (16, -1)])
def test_invalid_tile_or_overlap(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        tiling.tile_boxes(100, 100, tile, overlap)


def test_blend_weights_ramp_only_at_inner_edges() -> None:
    weights = tiling.blend_weights(32, 40, 8, edges=(False, True, True, False))
    assert weights.shape == (32, 40)
    assert (weights > 0).all() and (weights <= 1).all()
    assert torch.all(weights[0, 8:] == 1) and torch.all(weights[:24, -1] == 1)  # border edges keep weight 1
    assert torch.all(weights[:24, 8:] == 1)  # interior
    assert weights[-1, 20] < 0.05 and weights[10, 0] < 0.05  # inner edges fall towards 0
    # A falling and a rising ramp over exactly the overlap sum to 1.
    falling = tiling.blend_weights(1, 16, 8, edges=(False, False, False, True))[0, -8:]
    rising = tiling.blend_weights(1, 16, 8, edges=(False, False, True, False))[0, :8]
    assert torch.allclose(falling + rising, torch.ones(8), atol=1e-6)


def blend(tiles: list[torch.Tensor], boxes: list[tiling.Box], height: int, width: int, overlap: int) -> torch.Tensor:
    """The tiles put back as the stylize task does: one at a time through a ``Blender``."""
    blender = tiling.Blender(height, width, overlap)
    for tile, box in zip(tiles, boxes):
        blender.add(tile, box)
    return blender.result()


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), CASES)
def test_blending_tiles_cut_from_an_image_gives_it_back(height: int, width: int, tile: int, overlap: int) -> None:
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    boxes = tiling.tile_boxes(height, width, tile, overlap)
    out = blend([tiling.crop(image, box) for box in boxes], boxes, height, width, overlap)
    assert out.shape == image.shape
    assert torch.allclose(out, image, atol=1e-6)


def test_a_constant_stays_constant() -> None:
    boxes = tiling.tile_boxes(90, 70, 32, 8)
    out = blend([torch.full((3, 32, 32), 0.37) for _ in boxes], boxes, 90, 70, 8)
    assert (out - 0.37).abs().max() < 1e-6


def test_seams_are_smooth() -> None:
    # Each tile a different constant: a hard paste would jump by the full difference at a seam;
    # the cross-fade spreads it over the overlap, at most about pi/2 / overlap of it per pixel.
    height, width, tile, overlap = 96, 80, 40, 16
    boxes = tiling.tile_boxes(height, width, tile, overlap)
    values = torch.rand(len(boxes), generator=torch.Generator().manual_seed(1))
    out = blend([torch.full((1, tile, tile), v.item()) for v in values], boxes, height, width, overlap)
    gap = (values.max() - values.min()).item()
    steps = max(out.diff(dim=-1).abs().max().item(), out.diff(dim=-2).abs().max().item())
    assert steps <= 1.1 * (math.pi / 2) / overlap * gap


def test_blender_checks_its_input() -> None:
    blender = tiling.Blender(32, 32, 4)
    with pytest.raises(ValueError, match="no tiles"):
        blender.result()
    with pytest.raises(ValueError, match="does not fit"):
        blender.add(torch.zeros(3, 16, 16), (0, 0, 16, 20))
    with pytest.raises(ValueError, match="outside"):
        blender.add(torch.zeros(3, 16, 16), (20, 0, 16, 16))
    blender.add(torch.zeros(3, 16, 16), (0, 0, 16, 16))
    with pytest.raises(ValueError, match="cover"):
        blender.result()


def test_blend_detaches_parameters() -> None:
    boxes = tiling.tile_boxes(40, 40, 24, 8)
    tiles = [torch.nn.Parameter(torch.rand(3, 24, 24)) for _ in boxes]
    assert not blend(tiles, boxes, 40, 40, 8).requires_grad
