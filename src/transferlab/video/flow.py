"""Optical flow (OpenCV), warping, Ruder et al.'s forward-backward consistency
mask, and the flicker metric.

Convention: ``flow(a, b)`` is the backward flow of ``a`` into ``b``: pixel ``x`` of ``a`` is seen
at ``x + flow[:, y, x]`` in ``b`` (in pixels, channel 0 horizontal). So ``warp(b, flow(a, b))``
looks like ``a``: the previous stylized frame is warped into the current one with ``flow(cur, prev)``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

METHODS = ("dis", "farneback")


def _gray(image: Tensor) -> np.ndarray:
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).clamp(0, 1)
    return (gray * 255).round().byte().cpu().numpy()


class OpenCVFlow:
    """OpenCV's DIS (dense inverse search, preset medium; fast and robust on large motion) or Farneback."""

    def __init__(self, method: str = "dis") -> None:
        if method not in METHODS:
            raise ValueError(f"method={method!r}; choose one of {METHODS}")
        self.method = method
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        ga, gb = _gray(a), _gray(b)
        if self.dis is not None:
            flow = self.dis.calc(ga, gb, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return torch.from_numpy(flow).permute(2, 0, 1).to(a.device, torch.float32)


def warp(image: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """``image`` (``[C, H, W]``) sampled at ``x + flow(x)``, bilinear (or ``mode``: grid_sample's), borders
    replicated: the pixels whose source lies outside are smears of the edge, and ``consistency_mask``
    marks them unreliable. Sampling between pixels is a low-pass filter, and a stylized frame holds much
    of its energy near the pixel scale. Measured in total variation (losses.py) per warp: pixel noise on
    a 3 px pan with DIS flow (offsets near whole pixels) lost 3% bilinear, 0.3% bicubic; a stylized frame
    on a 2% zoom (offsets of 0.25 px on average) lost 38% bilinear, 16% bicubic. The frame's optimization
    steps must paint that back."""
    _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x = (xs + flow[0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1).unsqueeze(0)
    return F.grid_sample(image.unsqueeze(0), grid, mode=mode, padding_mode="border", align_corners=True)[0]


def consistency_mask(backward: Tensor, forward: Tensor) -> Tensor:
    """``[1, H, W]``: 1 where ``backward`` (cur -> prev) is reliable, 0 at disocclusions (the forward
    flow, followed back, does not return) and at motion boundaries (Ruder et al., 2016, eqs. 5-6),
    and where the flow leaves the frame."""
    fwd = warp(forward, backward)  # the forward flow at the point each pixel came from
    occluded = (fwd + backward).pow(2).sum(0) > 0.01 * (fwd.pow(2).sum(0) + backward.pow(2).sum(0)) + 0.5
    du = torch.gradient(backward[0])
    dv = torch.gradient(backward[1])
    gradient = du[0].pow(2) + du[1].pow(2) + dv[0].pow(2) + dv[1].pow(2)
    boundary = gradient > 0.01 * backward.pow(2).sum(0) + 0.002
    _, h, w = backward.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=backward.device), torch.arange(w, device=backward.device), indexing="ij"
    )
    x, y = xs + backward[0], ys + backward[1]
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    return (~(occluded | boundary | outside)).float().unsqueeze(0)


def warping_error(current: Tensor, previous: Tensor, backward: Tensor, mask: Tensor) -> tuple[float, float]:
    """(sum of squared errors, number of values) between ``current`` and ``previous`` warped into it,
    over the reliable pixels: summed over frames and divided, the flicker metric (mean squared
    warping error per channel value in [0, 1] units)."""
    diff = (current - warp(previous, backward)).pow(2) * mask
    return float(diff.sum()), float(mask.sum()) * current.shape[0]
