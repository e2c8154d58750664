"""Moving images by a flow field: the one warp of the project (the video wing warps earlier frames into the
current one with it; the trainers of feed-forward stylizers warp photos and their stylizations), which pixels
a flow keeps inside the frame, and synthetic motion whose flow is exact (a random shift, zoom and rotation).

Convention: a flow ``[2, H, W]`` (or ``[B, 2, H, W]``) holds, for each pixel ``x`` of the result, the offset
in pixels (channel 0 horizontal) to the point it is sampled from: ``warp(image, flow)[x] = image[x + flow(x)]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _pixels(h: int, w: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Each pixel's row and column, ``[H, W]`` each."""
    return torch.meshgrid(
        torch.arange(h, device=like.device, dtype=like.dtype),
        torch.arange(w, device=like.device, dtype=like.dtype),
        indexing="ij",
    )


def warp(image: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """``image`` (``[C, H, W]``, or ``[B, C, H, W]``) sampled at ``x + flow(x)`` (``[2, H, W]``, or
    ``[B, 2, H, W]``), bilinear (or ``mode``: grid_sample's), borders replicated (``inside`` says where the
    samples are real). Sampling between pixels is a low-pass filter, and a stylized frame holds much of its
    energy near the pixel scale. Measured in total variation (losses.py) per warp: pixel noise on a 3 px pan
    with DIS flow (offsets near whole pixels) lost 3% bilinear, 0.3% bicubic; a stylized frame on a 2% zoom
    (offsets of 0.25 px on average) lost 38% bilinear, 16% bicubic."""
    batched = image.dim() == 4
    image = image if batched else image.unsqueeze(0)
    flow = flow if flow.dim() == 4 else flow.unsqueeze(0)
    h, w = image.shape[-2:]
    ys, xs = _pixels(h, w, flow)
    x = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1).expand(image.shape[0], -1, -1, -1)
    out = F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="border", align_corners=True)
    return out if batched else out[0]


def inside(flow: Tensor) -> Tensor:
    """1 where ``x + flow(x)`` lies in the frame (the warp samples real pixels there), else 0: ``[1, H, W]``
    for a ``[2, H, W]`` flow, ``[B, 1, H, W]`` for ``[B, 2, H, W]``."""
    h, w = flow.shape[-2:]
    ys, xs = _pixels(h, w, flow)
    x, y = xs + flow[..., 0, :, :], ys + flow[..., 1, :, :]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(flow.dtype).unsqueeze(-3)


@dataclass(frozen=True)
class Motion:
    """The largest synthetic motion between two frames: ``shift`` pixels along each axis, ``zoom`` (a
    fraction: 0.05 scales by up to 5% either way), ``rotation`` degrees either way; each drawn uniformly."""

    shift: float
    zoom: float
    rotation: float


def affine_flow(shift: Tensor, zoom: Tensor, angle: Tensor, h: int, w: int) -> Tensor:
    """The exact flow ``[B, 2, H, W]`` of moving the frame's content by ``shift`` ``[B, 2]`` pixels (x, y),
    scaling it by ``zoom`` ``[B]`` and rotating it by ``angle`` ``[B]`` radians about the frame's centre:
    the result's pixel ``x`` shows the source at ``c + R(-angle) (x - c - shift) / zoom``."""
    ys, xs = _pixels(h, w, shift)
    dx, dy = xs - (w - 1) / 2, ys - (h - 1) / 2  # [H, W], from the centre
    dx, dy = dx - shift[:, 0, None, None], dy - shift[:, 1, None, None]  # [B, H, W]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    scale = zoom[:, None, None]
    sx, sy = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale
    return torch.stack([sx - dx - shift[:, 0, None, None], sy - dy - shift[:, 1, None, None]], dim=1)


def random_flow(batch: int, h: int, w: int, motion: Motion, generator: torch.Generator) -> Tensor:
    """``batch`` exact flows ``[B, 2, H, W]`` (on the CPU) of shifts, zooms and rotations drawn uniformly up
    to ``motion``'s limits from ``generator``."""

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1

    shift = uniform(batch, 2) * motion.shift
    zoom = 1 + uniform(batch) * motion.zoom
    angle = uniform(batch) * math.radians(motion.rotation)
    return affine_flow(shift, zoom, angle, h, w)
