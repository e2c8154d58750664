"""CLIPstyler's text-driven style losses (Kwon and Ye, CVPR 2022) over any vision-language model with
an image tower and a text tower into one space (``VisionLanguage``: open_clip's models, transferlab/text.py;
the tests' colour model). stylize optimizes an image with them, train_fast a network; VGG's content loss
and the total variation stay those of transferlab/perceptual.py.

Definitions (``n(v) = v / max(|v|, 1e-12)``; ``E_I``, ``E_T`` the image and text towers; ``x`` the output,
``c`` its content image, ``s`` the prompt ``task.style_text``, ``s0`` the source text ``task.source_text``):

- text direction ``t = n(n(E_T(s)) - n(E_T(s0)))``, computed once per run;
- image direction of a view ``y``: ``d(y) = n(E_I(y)) - n(E_I(c))``, ``E_I(c)`` of the whole content,
  computed once per content image (per scale);
- directional term ``L_dir = 1 - cos(d(x), t)``, ``x`` resized to the model's input;
- patch term ``L_patch = mean_i(l_i * [l_i >= threshold])``, ``l_i = 1 - cos(d(A_i(x)), t)``, over
  ``crops`` views ``A_i``: a random square of ``crop_size`` px, perspective-distorted (a quadrilateral
  inside it, each corner moved inward by up to ``distortion`` x half its side) and stretched to the
  model's input. A patch that already points the prompt's way (``l_i`` below the threshold) is rejected:
  its term is 0, and it still counts in the mean (as in CLIPstyler).

``cos`` is ``torch.nn.functional.cosine_similarity`` (its eps 1e-8). Where ``s == s0`` the text direction
is zero and both terms are 0 (no direction to move in; the model is not run). The global view and every
crop go through the image tower in one batch per evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class VisionLanguage(Protocol):
    """An image tower and a text tower into one embedding space."""

    input_size: int  # the side in pixels the image tower reads

    def encode_image(self, images: Tensor) -> Tensor:
        """``[B, 3, S, S]`` RGB in [0, 1], ``S = input_size`` -> ``[B, D]`` (not normalized)."""
        ...

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """``len(prompts)`` texts -> ``[len(prompts), D]`` (not normalized)."""
        ...


@dataclass(frozen=True)
class TextLossSettings:
    """``loss.text_*``: the two terms' weights and how the patches are drawn (the module docstring)."""

    direction_weight: float
    patch_weight: float
    crops: int
    crop_size: int
    distortion: float  # in [0, 1)
    threshold: float  # in [0, 2]: 1 - cos lies there


def normalize(v: Tensor) -> Tensor:
    return F.normalize(v.float(), dim=-1)


def text_direction(model: VisionLanguage, prompt: str, source: str) -> Tensor:
    """``t`` of the module docstring, ``[D]``; zero where ``prompt == source``."""
    if prompt == source:
        with torch.no_grad():
            return torch.zeros_like(model.encode_text([source])[0].float())
    with torch.no_grad():
        embedded = normalize(model.encode_text([prompt, source]))
    return normalize(embedded[0] - embedded[1])


def direction_loss(views: Tensor, content: Tensor, direction: Tensor) -> Tensor:
    """``1 - cos(n(views) - content, direction)`` per view: ``views`` ``[N, D]`` embeddings, ``content``
    ``[N, D]`` or ``[1, D]`` normalized content embeddings, ``direction`` ``[D]``."""
    return 1 - F.cosine_similarity(normalize(views) - content, direction.unsqueeze(0), dim=-1)


def rejected(losses: Tensor, threshold: float) -> Tensor:
    """The patch losses with those below ``threshold`` (patches already matching the prompt) set to 0."""
    return torch.where(losses >= threshold, losses, torch.zeros_like(losses))


def perspective_grids(boxes: Tensor, distortion: float, size: int, hw: tuple[int, int]) -> Tensor:
    """``grid_sample`` grids ``[N, size, size, 2]`` that read, for each box ``(top, left, side)`` of
    ``boxes`` ``[N, 3]`` (pixels of an image of ``hw``), a random quadrilateral inside it stretched to
    ``size`` px: each corner moved inward by up to ``distortion`` x half the side (0: the square itself)."""
    n = boxes.shape[0]
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    inward = -corners.sign() * torch.rand(n, 4, 2, dtype=torch.float64) * distortion
    target = corners + inward  # where each output corner reads, in the box's [-1, 1] coordinates
    u, v = corners[:, 0].expand(n, 4), corners[:, 1].expand(n, 4)
    x, y = target[..., 0], target[..., 1]
    zero, one = torch.zeros_like(u), torch.ones_like(u)
    rows_x = torch.stack([u, v, one, zero, zero, zero, -u * x, -v * x], -1)
    rows_y = torch.stack([zero, zero, zero, u, v, one, -u * y, -v * y], -1)
    a = torch.cat([rows_x, rows_y], 1)  # [N, 8, 8]: the homography through the four corner pairs
    h = torch.cat([torch.linalg.solve(a, torch.cat([x, y], 1)), torch.ones(n, 1, dtype=torch.float64)], 1)
    h = h.view(n, 3, 3)
    ramp = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(ramp, ramp, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3) @ h.transpose(1, 2)
    local = points[..., :2] / points[..., 2:]  # [N, size*size, 2] in the box's coordinates
    top, left, side = (boxes[:, i].double().view(n, 1) for i in range(3))
    height, width = hw
    gx_img = (left + (local[..., 0] + 1) / 2 * side) / width * 2 - 1
    gy_img = (top + (local[..., 1] + 1) / 2 * side) / height * 2 - 1
    return torch.stack([gx_img, gy_img], -1).view(n, size, size, 2)


def patch_views(image: Tensor, crops: int, crop_size: int, distortion: float, size: int) -> Tensor:
    """``crops`` augmented views ``[B * crops, 3, size, size]`` of each image of ``image`` ``[B, 3, H, W]``
    (the module docstring's ``A_i``), drawn from torch's generator; a crop larger than the image's short
    side is that side."""
    batch, _, height, width = image.shape
    side = min(crop_size, height, width)
    n = batch * crops
    top = torch.randint(0, height - side + 1, (n,))
    left = torch.randint(0, width - side + 1, (n,))
    boxes = torch.stack([top, left, torch.full((n,), side)], 1)
    grids = perspective_grids(boxes, distortion, size, (height, width)).to(image.device, image.dtype)
    # Each image's crops side by side in one grid: the image is read in place, not copied once per crop.
    grids = grids.view(batch, crops, size, size, 2).transpose(1, 2).reshape(batch, size, crops * size, 2)
    views = F.grid_sample(image, grids, mode="bilinear", padding_mode="border", align_corners=False)
    return views.view(batch, 3, size, crops, size).permute(0, 3, 1, 2, 4).reshape(n, 3, size, size)


class TextLoss(nn.Module):
    """The directional and patch terms of the module docstring over a frozen ``model``. ``set_content``
    gives the content of a single image optimized at a fixed content (stylize); a network trainer passes
    its photos to ``parts`` instead."""

    def __init__(self, model: nn.Module, direction: Tensor, settings: TextLossSettings) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.settings = settings
        self.register_buffer("direction", direction.float())
        self.active = bool(direction.abs().sum() > 0)
        self.content_embedding: Tensor | None = None

    def train(self, mode: bool = True) -> TextLoss:
        super().train(mode)
        self.model.eval()  # frozen: dropout and the like stay off while the network around it trains
        return self

    def embed_content(self, content: Tensor) -> Tensor:
        """``n(E_I(c))`` ``[B, D]`` of content images ``[B, 3, H, W]``."""
        with torch.no_grad():
            return normalize(self.model.encode_image(self._resized(content)))

    def set_content(self, content: Tensor) -> None:
        self.content_embedding = self.embed_content(content) if self.active else None

    def _resized(self, image: Tensor) -> Tensor:
        size = self.model.input_size
        return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    def parts(self, image: Tensor, content: Tensor | None = None) -> dict[str, Tensor]:
        """``text_direction`` and ``text_patch``, unweighted, of ``image`` ``[B, 3, H, W]``; ``content``:
        its content images, else the one of ``set_content``."""
        if not self.active:
            zero = image.new_zeros((), dtype=torch.float32)
            return {"text_direction": zero, "text_patch": zero}
        source = self.embed_content(content) if content is not None else self.content_embedding
        if source is None:
            raise ValueError("the text loss has no content: call set_content or pass content")
        s, batch = self.settings, image.shape[0]
        patches = patch_views(image, s.crops, s.crop_size, s.distortion, self.model.input_size)
        embedded = self.model.encode_image(torch.cat([self._resized(image), patches]))  # one pass
        source = source.expand(batch, -1)
        direction = direction_loss(embedded[:batch], source, self.direction).mean()
        per_patch = direction_loss(embedded[batch:], source.repeat_interleave(s.crops, 0), self.direction)
        return {"text_direction": direction, "text_patch": rejected(per_patch, s.threshold).mean()}

    def weighted(self, parts: dict[str, Tensor]) -> Tensor:
        s = self.settings
        return s.direction_weight * parts["text_direction"] + s.patch_weight * parts["text_patch"]

    def forward(self, image: Tensor, content: Tensor | None = None) -> Tensor:
        return self.weighted(self.parts(image, content))
