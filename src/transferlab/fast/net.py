"""A stylizer file as a Python callable on images (the API's ``load_stylizer``): the one loader
(``stylizer.load``) makes the network, and apply_fast's controls finish each output the same way
(``color.preserve``, then ``apply.interpolate`` by alpha times the strength map, in pixel space for every
family). A PIL image in gives a PIL image out; a tensor ``[3, H, W]`` or ``[N, 3, H, W]`` in [0, 1] gives a
tensor of the same shape, dtype and device."""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

from PIL import Image
from torch import Tensor

from transferlab import checks, images, saliency
from transferlab.color import preserve as preserve_colors
from transferlab.errors import ConfigError, ImageError
from transferlab.fast import apply, stylizer
from transferlab.fast.arbitrary.networks import MIN_SIZE as STYLE_MIN_SIZE
from transferlab.fast.settings import COLORS, NETWORK_FILE, model_file

ImageLike = Image.Image | Tensor
StyleLike = str | PathLike | Image.Image | Tensor


class StylizerNet:
    """``net(image, style=None, alpha=1.0, strength_map=None, color="none")``: ``image`` stylized.

    ``family``: per_style (the style is trained in; ``style`` must be left out) or arbitrary (``style`` is
    required: a path, pinned URL, ``sample:<name>``, PIL image or ``[3, h, w]`` tensor; its long side resized to
    ``style_size``). ``alpha`` in [0, 1] and ``strength_map`` (a grayscale image path, PIL image or ``[1, H, W]``
    tensor, or ``"auto"``: from the content's saliency) weaken the style overall and per pixel; ``color``:
    none, luminance or histogram (keep the content's colours). The options are apply_fast's ``task.*`` keys."""

    def __init__(self, path: Path, device: str = "cpu", style_size: int = 512) -> None:
        self.path = model_file(str(path), "path", (".ckpt", ".onnx"), NETWORK_FILE)
        self.device = device
        self.style_size = checks.at_least(style_size, STYLE_MIN_SIZE, "style_size")
        onnx = self.path.suffix.lower() == ".onnx"
        self.family = stylizer.onnx_contract(self.path, "path") if onnx else stylizer.read_network(self.path, "path")[0]
        self.min_size = stylizer.MIN_SIZES[self.family]
        self._style: tuple[StyleLike | None, stylizer.Stylizer] | None = None

    def __repr__(self) -> str:
        return f"StylizerNet({str(self.path)!r}, family={self.family!r}, device={self.device!r})"

    def __call__(
        self,
        image: ImageLike,
        style: StyleLike | None = None,
        alpha: float = 1.0,
        strength_map: str | PathLike | ImageLike | None = None,
        color: str = "none",
    ) -> ImageLike:
        batch = _batch(image)
        alpha = checks.number(alpha, "alpha")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"alpha={alpha} is invalid; it must be in [0, 1] (0 content, 1 full style)")
        mode = checks.choice(color, COLORS, "color")
        strength = _strength(alpha, strength_map)
        if min(batch.shape[-2:]) < self.min_size:
            h, w = batch.shape[-2:]
            raise ImageError(f"image is {w}x{h} px; this network needs at least {self.min_size} px a side (upscale it)")
        out = preserve_colors(self._stylizer(style)(batch), batch, mode)
        if strength is not None:
            out = apply.interpolate(batch, out, strength(batch))
        if isinstance(image, Image.Image):
            return images.to_pil(out[0])
        out = out.to(image.device, image.dtype)
        return out if image.dim() == 4 else out[0]

    def _stylizer(self, style: StyleLike | None) -> stylizer.Stylizer:
        """The one loader's stylizer for ``style`` (kept for the next call with the same style)."""
        last = self._style
        if last is not None and (last[0] is style or (isinstance(style, (str, PathLike)) and last[0] == style)):
            return last[1]
        loaded = stylizer.load(self.path, "path", self.device, _style_tensor(style, self.style_size), "style")
        self._style = (style, loaded)
        return loaded


def _batch(image: ImageLike) -> Tensor:
    """``image`` as a ``[N, 3, H, W]`` float batch on the CPU, or an ImageError naming what it is."""
    if isinstance(image, Image.Image):
        return images.from_pil(image).unsqueeze(0)
    if isinstance(image, Tensor) and image.is_floating_point() and image.dim() in (3, 4) and image.shape[-3] == 3:
        batch = image.detach().float().cpu()
        return batch if batch.dim() == 4 else batch.unsqueeze(0)
    what = f"a tensor of shape {list(image.shape)} ({image.dtype})" if isinstance(image, Tensor) else type(image)
    raise ImageError(f"image is {what}; give a PIL image or a float tensor [3, H, W] or [N, 3, H, W] in [0, 1]")


def _style_tensor(style: StyleLike | None, size: int) -> Tensor | None:
    """An arbitrary-style network's style ``[1, 3, h, w]``, its long side ``size``; None stays None (the loader
    says which family needs one and which refuses one)."""
    if style is None or isinstance(style, (str, PathLike)):
        return None if style is None else stylizer.style_image(str(style), "style", size)
    tensor = _batch(style)
    if tensor.shape[0] != 1:
        raise ImageError(f"style is a batch of {tensor.shape[0]} images; give one style image")
    tensor = images.resize_long_side(tensor, size)
    if min(tensor.shape[-2:]) < STYLE_MIN_SIZE:
        h, w = tensor.shape[-2:]
        raise ImageError(f"style is {w}x{h} px at long side {size}; a style needs at least {STYLE_MIN_SIZE} px a side")
    return tensor


def _strength(alpha: float, source: str | PathLike | ImageLike | None) -> Callable[[Tensor], Tensor] | None:
    """apply_fast's strength per pixel (``apply.strength_maps``), for a map in memory too."""
    if source is None or isinstance(source, (str, PathLike)):
        checked = saliency.strength_source(None if source is None else str(source), "strength_map")
        return apply.strength_maps(alpha, checked)
    if isinstance(source, Image.Image):
        loaded = images.from_pil(source).mean(dim=0, keepdim=True)
    elif (
        isinstance(source, Tensor)
        and source.is_floating_point()
        and source.dim() in (2, 3)
        and source.numel() == source.shape[-2] * source.shape[-1]
    ):
        loaded = source.detach().float().cpu().reshape(1, *source.shape[-2:])
    else:
        raise ImageError("strength_map is no map; give a grayscale image (path or PIL), a [1, H, W] tensor or auto")
    return lambda batch: alpha * images.resize(loaded, tuple(batch.shape[-2:]))
