"""Every control on video frames, for every method: style masks and a strength map per frame (given once and
held fixed or moved with the optical flow, or ``auto``: each frame's own saliency), the overall strength, the
frame's colours, and for an arbitrary-style network several styles and the clip's content statistics.

Order for a feed-forward network (``network_frames``): stylize, keep the frame's colours, lerp from the frame by
the strength (apply_fast's order), and only then blend with the previous output warped by the flow
(``temporal.BlendedFrames``), in proportion to the strength (``styled_only``). The blend sees the pixels that
are written, so whatever the controls add from frame to frame (a saliency map recomputed per frame, a colour
transform fitted per frame) is smoothed with the network's own flicker instead of being added after the
smoothing, and a pixel without style stays exactly the content frame. An optimization takes masks, strength
and colour inside its loss (``style.scene.compose``), with the temporal loss on the final pixels likewise."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from transferlab import color, images, saliency
from transferlab.errors import ConfigError
from transferlab.fast import stylizer
from transferlab.fast.apply import interpolate
from transferlab.fast.arbitrary import networks as arbitrary
from transferlab.fast.arbitrary import ops
from transferlab.fast.arbitrary.networks import AdaINNet
from transferlab.motion import warp
from transferlab.style.scene import check_coverage
from transferlab.video import io
from transferlab.video.flow import OpenCVFlow
from transferlab.video.settings import VideoSettings

log = logging.getLogger(__name__)

NAMES = {"sanet": "SANet", "stytr": "transformer (StyTr)"}  # the attention networks, in messages


@dataclass(frozen=True)
class Maps:
    """One frame's maps at the frame's size: where each style goes, and how much style each pixel keeps."""

    masks: list[Tensor] | None  # [1, H, W] per style
    strength: Tensor | None  # [1, H, W]: task.alpha times the strength map; None: full style everywhere


class FrameMaps:
    """``maps(frame)``, called once per frame in order: the frame's ``Maps``. Masks and a strength map file are
    read once at the frames' size (another size is resized, as the image tasks do); with
    ``task.map_motion=flow`` each frame's are the previous frame's warped by the flow between the two input
    frames (computed here: the temporal targets' flow runs between results and may skip distance 1)."""

    def __init__(self, s: VideoSettings) -> None:
        c = self.controls = s.controls
        self.masks = [images.resize(images.load_map(p), s.hw).to(s.device) for p in c.style_masks] or None
        if s.method == "optimize":
            check_coverage(self.masks)  # the style wing's rule: an optimization has no content to fall back on
        file = isinstance(c.strength_map, Path)
        self.strength = images.resize(images.load_map(c.strength_map), s.hw).to(s.device) if file else None
        self.flow = OpenCVFlow(s.flow, s.flow_size) if c.moving else None
        self.previous: Tensor | None = None

    def __call__(self, frame: Tensor) -> Maps:
        if self.flow is not None and self.previous is not None:
            backward = self.flow(frame, self.previous)
            self.masks = None if self.masks is None else [warp(m, backward) for m in self.masks]
            self.strength = None if self.strength is None else warp(self.strength, backward)
        self.previous = frame
        return Maps(self.masks, self.frame_strength(frame))

    def frame_strength(self, frame: Tensor) -> Tensor | None:
        """``task.alpha`` times the strength map (``auto``: recomputed from each frame)."""
        alpha = self.controls.alpha
        if self.controls.strength_map == saliency.AUTO:
            return alpha * saliency.auto_strength(frame.unsqueeze(0))[0]
        if self.strength is not None:
            return alpha * self.strength
        return None if alpha == 1 else torch.full_like(frame[:1], alpha)


def network_frames(s: VideoSettings) -> Callable[[Tensor, Maps], Tensor]:
    """``stylize(frame, maps)``: the network's output for ``frame`` ``[3, H, W]`` with its maps, the frame's
    colours kept per ``task.color``, then lerped from the frame by the strength (pixel space for every family,
    as apply_fast: 0 is exactly the frame)."""
    raw, mode = network_output(s), s.controls.color

    def stylize(frame: Tensor, maps: Maps) -> Tensor:
        out = color.preserve(raw(frame, maps.masks), frame, mode)
        return out if maps.strength is None else interpolate(frame, out, maps.strength)

    return stylize


def styled_only(temporal: tuple[Tensor, Tensor] | None, maps: Maps) -> tuple[Tensor, Tensor] | None:
    """The temporal blend's ``(warped, mask)`` with the mask scaled by the frame's strength: a pixel is blended
    with the previous output in proportion to the style it carries. Where the strength is 0 the output is the
    content frame, as steady as the input already; blending it would only blur it by the warp's interpolation
    (and alpha=0 would no longer give the content)."""
    if temporal is None or maps.strength is None:
        return temporal
    return temporal[0], temporal[1] * maps.strength


def style_images(s: VideoSettings) -> list[Tensor]:
    """The styles at the frames' long side (their own size without task.size), ``[1, 3, h, w]`` each."""
    key = "task.style" if len(s.styles) == 1 else "task.style[{}]"
    return [stylizer.style_image(str(p), key.format(i), s.size) for i, p in enumerate(s.styles)]


def network_output(s: VideoSettings) -> Callable[[Tensor, list[Tensor] | None], Tensor]:
    """``output(frame, masks)``: the network's stylization of one frame. Any stylizer through the one loader;
    several styles, masks or the clip's statistics need an arbitrary-style network's features."""
    styles, c = style_images(s), s.controls
    if not (c.style_masks or len(styles) > 1 or c.global_stats):
        network = stylizer.load(s.network, "task.network", s.device, styles[0] if styles else None)
        return lambda frame, masks: network(frame.unsqueeze(0))[0].to(frame.device)
    family, net, spec = stylizer.read_network(s.network, "task.network")
    asked = {
        "several styles": len(styles) > 1,
        "task.style_masks": bool(c.style_masks),
        "task.global_stats": c.global_stats,
    }
    if family == "per_style":
        raise ConfigError(
            f"task.network={s.network} is a per-style network (its one style is trained in): "
            f"{', '.join(k for k, v in asked.items() if v)} need a train_adain checkpoint; say where its style "
            "applies with task.strength_map"
        )
    stylizer.style_fits(family, styles[0] if styles else None, "task.network", s.network, "task.style")
    if c.global_stats and spec["arch"] != "adain":
        raise ConfigError(
            f"task.global_stats=true: task.network={s.network} is a {arbitrary.ARCH_NAMES[spec['arch']]} network, "
            "which normalizes no frame by its own statistics alone (it attends over the style); give an AdaIN "
            "network or drop task.global_stats"
        )
    net = net.to(s.device)
    with torch.inference_mode():  # the styles' codes once per video
        codes = [net.code(style.to(s.device)) for style in styles]
        stats = clip_statistics(net, s) if c.global_stats else None
    blend = (
        None if c.style_masks or len(codes) == 1 else [m.to(s.device) for m in ops.blend_masks(list(c.style_weights))]
    )

    def output(frame: Tensor, masks: list[Tensor] | None) -> Tensor:
        placed = blend if masks is None else [m.unsqueeze(0) for m in masks]
        with torch.inference_mode():
            out = net.stylize(frame.unsqueeze(0).to(s.device), codes, 1.0, placed, None, stats)
        return out[0].float().to(frame.device)

    return output


def clip_statistics(net: AdaINNet, s: VideoSettings) -> tuple[Tensor, Tensor]:
    """The content features' channel mean and std over every frame of the clip (up to ``task.max_frames``):
    a first pass over the input, read again for the stylization (exact statistics, not a running estimate,
    so the first frame is normalized as the last)."""
    frames = itertools.islice(io.read_frames(s.input, s.hw), s.max_frames)
    stats = ops.mean_std_over(net.content_features(f.unsqueeze(0).to(s.device)) for f in frames)
    log.info("task.global_stats: every frame normalized by the content statistics of the whole clip")
    return stats
