"""Optical flow (OpenCV), Ruder et al.'s forward-backward consistency mask, and the flicker metric;
warping by a flow is the floor's (transferlab/motion.py, imported here for the wing).

Convention: ``flow(a, b)`` is the backward flow of ``a`` into ``b``: pixel ``x`` of ``a`` is seen
at ``x + flow[:, y, x]`` in ``b`` (in pixels, channel 0 horizontal). So ``warp(b, flow(a, b))``
looks like ``a``: the previous stylized frame is warped into the current one with ``flow(cur, prev)``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from transferlab.motion import inside, warp

# DIS's presets: medium, and fast: at 1024x768 about 4x cheaper, its warping error of the input frames about 2x
# medium's and the blended frames' flicker 1-4% higher (docs/video.md, "Frames per second").
DIS_PRESETS = {"dis": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST}
METHODS = (*DIS_PRESETS, "farneback")


def _gray(image: Tensor) -> np.ndarray:
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).clamp(0, 1)
    return (gray * 255).round().byte().cpu().numpy()


class OpenCVFlow:
    """OpenCV's DIS (dense inverse search, preset medium or fast; robust on large motion) or Farneback;
    ``size``: the long side the flow is computed at (None: the frames'), the field then resized to the
    frames and its vectors scaled with it (frames no larger are taken as they are)."""

    def __init__(self, method: str = "dis", size: int | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"method={method!r}; choose one of {METHODS}")
        self.method, self.size = method, size
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[method]) if method in DIS_PRESETS else None

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        ga, gb = _gray(a), _gray(b)
        h, w = ga.shape
        if self.size is not None and max(h, w) > self.size:
            # Area-averaged: the coarse frames keep the texture's mean instead of aliasing it.
            small = (max(1, round(w * self.size / max(h, w))), max(1, round(h * self.size / max(h, w))))
            ga, gb = (cv2.resize(g, small, interpolation=cv2.INTER_AREA) for g in (ga, gb))
        flow = self._flow(ga, gb)
        if flow.shape[:2] != (h, w):
            scale = np.array([w / flow.shape[1], h / flow.shape[0]], dtype=np.float32)
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * scale
        return torch.from_numpy(flow).permute(2, 0, 1).to(a.device, torch.float32)

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.dis is not None:
            return self.dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


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
    return (~(occluded | boundary)).float().unsqueeze(0) * inside(backward)


def warping_error(current: Tensor, previous: Tensor, backward: Tensor, mask: Tensor) -> tuple[float, float]:
    """(sum of squared errors, number of values) between ``current`` and ``previous`` warped into it,
    over the reliable pixels: summed over frames and divided, the flicker metric (mean squared
    warping error per channel value in [0, 1] units)."""
    diff = (current - warp(previous, backward)).pow(2) * mask
    return float(diff.sum()), float(mask.sum()) * current.shape[0]
