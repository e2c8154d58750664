"""The floor's warp and synthetic motion (motion.py): exact flows, checked against shifts and grid_sample."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transferlab import motion


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (-4, 5)])
def test_the_exact_flow_of_an_integer_shift_warps_with_zero_error(dx: int, dy: int) -> None:
    image = torch.rand(2, 3, 24, 32)
    shift = torch.tensor([[dx, dy]], dtype=torch.float32).expand(2, 2)
    flow = motion.affine_flow(shift, torch.ones(2), torch.zeros(2), 24, 32)
    moved, mask = motion.warp(image, flow), motion.inside(flow)
    rolled = torch.roll(image, shifts=(dy, dx), dims=(-2, -1))  # the content moved by (dx, dy)
    assert mask.shape == (2, 1, 24, 32)
    assert int(mask[0, 0].sum()) == (24 - abs(dy)) * (32 - abs(dx))  # the rest came from outside the frame
    # Zero up to float32: grid_sample's normalized coordinates round to ~1e-7 of the side (2e-6 at 32 px).
    assert torch.allclose(moved * mask, rolled * mask, atol=5e-6)


def test_warp_takes_a_frame_or_a_batch() -> None:
    image, flow = torch.rand(3, 10, 12), torch.randn(2, 10, 12)
    assert torch.equal(motion.warp(image, flow), motion.warp(image.unsqueeze(0), flow.unsqueeze(0))[0])
    assert motion.inside(flow).shape == (1, 10, 12)


def test_the_flow_of_a_shift_zoom_and_rotation_is_grid_samples_affine_motion() -> None:
    """The same motion written as affine_grid's theta (normalized coordinates, align_corners=True)."""
    h, w = 20, 28
    image = torch.rand(2, 3, h, w)
    shift, zoom, angle = (
        torch.tensor([[1.5, -2.0], [-3.0, 0.5]]),
        torch.tensor([1.04, 0.95]),
        torch.tensor([0.03, -0.05]),
    )
    flow = motion.affine_flow(shift, zoom, angle, h, w)
    half = torch.diag(torch.tensor([(w - 1) / 2, (h - 1) / 2]))
    thetas = []
    for t, s, a in zip(shift, zoom, angle, strict=True):
        back = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / s  # R(-a) / zoom
        linear = torch.linalg.inv(half) @ back @ half
        thetas.append(torch.cat([linear, (-torch.linalg.inv(half) @ back @ t).unsqueeze(1)], dim=1))
    grid = F.affine_grid(torch.stack(thetas), [2, 3, h, w], align_corners=True)
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    assert torch.allclose(motion.warp(image, flow), expected, atol=1e-5)


def test_random_motion_stays_within_its_limits_and_depends_on_the_generator_only() -> None:
    limits = motion.Motion(shift=3.0, zoom=0.05, rotation=2.0)
    flow = motion.random_flow(16, 32, 32, limits, torch.Generator().manual_seed(1))
    again = motion.random_flow(16, 32, 32, limits, torch.Generator().manual_seed(1))
    assert torch.equal(flow, again)
    centre = flow[:, :, 15:17, 15:17].abs().amax()  # near the centre only the shift moves pixels
    assert 0 < centre <= 3.0 + 0.6
    corner = 16 * math.sqrt(2) * (0.05 + math.radians(2)) * 1.1 + 3 * 1.1
    assert flow.abs().amax() <= corner
    still = motion.random_flow(2, 8, 8, motion.Motion(0.0, 0.0, 0.0), torch.Generator())
    assert torch.equal(still, torch.zeros(2, 2, 8, 8))
