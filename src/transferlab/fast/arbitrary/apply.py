"""The apply_adain task: stylize an image, a list or a folder with a trained AdaIN decoder and any styles
given at run time: alpha, several styles blended with weights or placed by one mask each, a strength
map, colour preservation. Each style's statistics are computed once and reused for every image."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from transferlab import fetch, images, memory, saliency
from transferlab.fast import stylizer
from transferlab.fast.apply import applied, gather, stylize_files
from transferlab.fast.arbitrary import ops as A
from transferlab.fast.arbitrary.networks import MIN_SIZE, AdaINNet
from transferlab.fast.arbitrary.settings import ApplyAdaINSettings
from transferlab.fast.tiled import Bounded
from transferlab.files import write_json
from transferlab.result import TaskResult


def _map(source: str, key: str) -> Tensor:
    """A grayscale map ``[1, 1, h, w]`` in [0, 1] (resized to each content image when applied)."""
    return images.load_map(fetch.resolve(source, key)).unsqueeze(0)


def exported_stylizer(s: ApplyAdaINSettings) -> Callable[[Tensor], Tensor]:
    """The exported pipeline (ONNX Runtime, CPU) with the one style its door allows, through the one loader."""
    style = stylizer.style_image(s.styles[0], "task.style", s.style_size)
    return stylizer.load(s.model, "ckpt_path", "cpu", style, family="arbitrary")


def check_style_size(net: AdaINNet, paths: list[Path], size: int, device: str) -> None:
    """Refuse, before any style is encoded, a ``task.style_size`` whose largest style would not fit ``device``."""
    sides = [images.open_rgb(p).size for p in paths]
    pixels = max(round(size * size * min(wh) / max(wh)) for wh in sides)
    if pixels > memory.probe_sides(MIN_SIZE)[1] ** 2:
        need = memory.footprint(net.code, MIN_SIZE, device).peak(pixels)
        memory.check(need, device, f"task.style_size={size}", "choose a smaller task.style_size (512 by default)")


def checkpoint_stylizer(s: ApplyAdaINSettings) -> Callable[[Tensor], Tensor]:
    """The checkpoint's network with every control: styles blended or masked, alpha, strength map."""
    net = stylizer.read_network(s.model, "ckpt_path", "arbitrary")[1].to(s.device)
    key = "task.style" if len(s.styles) == 1 else "task.style[{}]"
    paths = [fetch.resolve(p, key.format(i)) for i, p in enumerate(s.styles)]
    check_style_size(net, paths, s.style_size, s.device)
    with torch.inference_mode():  # once per style, not per image
        codes = [
            net.code(stylizer.style_image(p, key.format(i), s.style_size).to(s.device)) for i, p in enumerate(s.styles)
        ]
    masks = [_map(m, f"task.style_masks[{i}]").to(s.device) for i, m in enumerate(s.style_masks)] or None
    auto = s.strength_map == saliency.AUTO
    strength = _map(s.strength_map, "task.strength_map").to(s.device) if s.strength_map and not auto else None
    if masks is None and len(codes) > 1:
        masks = [m.to(s.device) for m in A.blend_masks(list(s.style_weights))]

    def stylize(batch: Tensor) -> Tensor:
        with torch.inference_mode():
            batch = batch.to(s.device)
            own = saliency.auto_strength(batch) if auto else strength  # auto: each image's own map
            return net.stylize(batch, codes, s.alpha, masks, own).float().cpu()

    return stylize


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = ApplyAdaINSettings.from_cfg(cfg)
    files = gather(s.images.inputs)
    stylize = exported_stylizer(s) if s.model.suffix.lower() == ".onnx" else checkpoint_stylizer(s)
    # The checkpoint's network is measured; an image beyond memory is refused, not tiled (fast/tiled.py: the
    # content's global feature statistics).
    bound = None
    if s.model.suffix.lower() != ".onnx":
        bound = Bounded(
            stylize, lambda: memory.footprint(stylize, MIN_SIZE), memory.budget(s.device), MIN_SIZE, False, s.device
        )
    out_dir = output_dir / "stylized"
    im = s.images
    start = time.perf_counter()
    names = stylize_files(
        files, stylize, out_dir, im.size, im.batch_size, im.color, im.format, MIN_SIZE, "apply_adain", bound
    )
    seconds = time.perf_counter() - start
    report = {
        "model": str(s.model),
        "styles": list(s.styles),
        "style_weights": None if s.style_masks else list(s.style_weights),
        "style_masks": list(s.style_masks) or None,
        "strength_map": s.strength_map,
        "alpha": s.alpha,
        "color": im.color,
        "outputs": names,
    }
    write_json(report, output_dir / "apply.json")
    return applied("apply_adain", report, seconds, s, out_dir)
