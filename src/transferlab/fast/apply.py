"""The apply_fast task: stylize an image, a list or a folder with any stylizer through the one loader (a
train_fast or train_adain checkpoint, or an exported ONNX model; an arbitrary-style one with ``task.style``);
any size (output size = input size), batched by size, with a progress bar; outputs written atomically into
<run dir>/stylized/. ``task.alpha`` and ``task.strength_map`` (a grayscale image, or ``auto``: saliency.py)
weaken the style overall and per pixel (``interpolate``)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from transferlab import color, fetch, images, memory, saliency
from transferlab.errors import ImageError
from transferlab.fast import data, stylizer
from transferlab.fast.per_style.networks import MIN_SIZE
from transferlab.fast.settings import ApplySettings
from transferlab.fast.tiled import Bounded
from transferlab.files import write_json
from transferlab.result import TaskResult, settings_hparams

log = logging.getLogger(__name__)

SHOWN = 4  # outputs that represent an apply run (a sweep's contact sheet shows each)


def gather(inputs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = fetch.resolve(item, "task.input")  # sample:, dataset: and pinned URLs as the door checked them
        files.extend(data.list_images(path, "task.input") if path.is_dir() else [path])
    return files


def interpolate(content: Tensor, stylized: Tensor, strength: Tensor) -> Tensor:
    """``content`` where ``strength`` (broadcast over ``[N, 3, H, W]``) is 0, ``stylized`` exactly where it is 1.

    A per-style network has no content/style feature split to interpolate (its style is in every weight), so
    its strength is a blend in pixel space, what users of jcjohnson/fast-neural-style#12 asked for. An
    arbitrary-style network gets the same rule here: ``stylizer.load`` gives every stylizer as one call on a batch
    with no alpha, and one rule keeps alpha=0 the content exactly for every family (apply_adain blends the
    features instead, where alpha=0 is the decoder's reconstruction of the content)."""
    return torch.lerp(content, stylized, strength.to(stylized.dtype))


def strength_maps(alpha: float, source: str | None) -> Callable[[Tensor], Tensor] | None:
    """The strength per pixel for a content batch ``[N, 3, H, W]``: ``alpha`` times the map ``source`` (resized
    to the batch) or the saliency's (``auto``); None when the style is whole everywhere."""
    if source is None:
        return None if alpha == 1 else lambda batch: torch.tensor(alpha)
    if source == saliency.AUTO:
        return lambda batch: alpha * saliency.auto_strength(batch)
    loaded = images.load_map(fetch.resolve(source, "task.strength_map"))
    return lambda batch: alpha * images.resize(loaded, tuple(batch.shape[-2:]))


def stylize_files(
    files: list[Path],
    stylize: Callable[[Tensor], Tensor],
    out_dir: Path,
    size: int | None,
    batch_size: int,
    color_mode: str,
    fmt: str,
    min_size: int = MIN_SIZE,
    desc: str = "apply_fast",
    bound: Bounded | None = None,
    strength: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, str]:
    """``stylize`` (``[N, 3, H, W] -> [N, 3, H, W]``) over ``files``: each resized to long side ``size``
    (None: its own size), batched by size, colours kept per ``color_mode``, written atomically as
    ``out_dir/<stem>.<fmt>`` (a stem seen twice gets ``_1``, ...); returns ``{input: output}``. ``bound``
    checks every image's size against memory before any is decoded, and runs ``stylize`` within it.
    ``strength`` maps a content batch to how much of the style each pixel keeps (``interpolate``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Decode lazily per size group: one pass over headers to group, then batches of equal size.
    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path in files:
        width, height = images.open_rgb(path).size
        if size is not None:
            scale = size / max(width, height)
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
        if min(height, width) < min_size:
            raise ImageError(
                f"image {path} is {width}x{height} px; the network needs at least {min_size} px a side (upscale it)"
            )
        if bound is not None:
            bound.check(path, height, width)
        groups[(height, width)].append(path)
    stylize = bound or stylize
    names: dict[str, str] = {}
    used: set[str] = set()
    with tqdm(total=len(files), desc=desc, unit="img") as bar:
        for hw, paths in groups.items():
            for i in range(0, len(paths), batch_size):
                chunk = paths[i : i + batch_size]
                batch = torch.stack([images.resize(images.load_image(p), hw) for p in chunk])
                result = color.preserve(stylize(batch), batch, color_mode)
                if strength is not None:  # after the whole image's output, so tiles need no cut of the map
                    result = interpolate(batch, result, strength(batch))
                for path, image in zip(chunk, result):
                    name = f"{path.stem}.{fmt}"
                    k = 1
                    while name in used:  # same stem in two folders
                        name, k = f"{path.stem}_{k}.{fmt}", k + 1
                    used.add(name)
                    images.save_image(image, out_dir / name)
                    names[str(path)] = str(out_dir / name)
                bar.update(len(chunk))
    return names


def applied(task: str, report: dict[str, Any], seconds: float, settings: Any, output_dir: Path) -> TaskResult:
    """The result of apply task ``task``: its apply.json ``report`` and the time per image as metrics, the first
    outputs as its images, the task's door ``settings`` as its HParams."""
    outputs = report["outputs"]
    each = seconds / max(len(outputs), 1)
    log.info("%s: %d images into %s, %.3g s each", task, len(outputs), output_dir, each)
    return TaskResult(
        metrics={**report, "images": len(outputs), "seconds_per_image": each},
        objective=None,
        images=tuple(Path(p) for p in list(outputs.values())[:SHOWN]),
        caption=(f"{len(outputs)} images, {each:.2g} s each",),
        hparams=settings_hparams(settings),
    )


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = ApplySettings.from_cfg(cfg)
    files = gather(s.images.inputs)
    style = stylizer.style_image(s.style, "task.style", s.style_size) if s.style else None
    stylize = stylizer.load(s.model, "ckpt_path", s.device, style)
    # A checkpoint's network is measured (an ONNX model's memory is ONNX Runtime's, bounded by the loader). A
    # per-style network's pixels are local, so an image too large for memory is stylized in tiles; an
    # arbitrary-style one's are not (fast/tiled.py), so such an image is refused.
    bound = None
    if s.model.suffix.lower() != ".onnx":
        side, tile = stylize.min_size, stylize.family == "per_style"
        bound = Bounded(stylize, lambda: memory.footprint(stylize, side), memory.budget(s.device), side, tile, s.device)
    out_dir = output_dir / "stylized"
    im = s.images
    start = time.perf_counter()
    names = stylize_files(
        files,
        stylize,
        out_dir,
        im.size,
        im.batch_size,
        im.color,
        im.format,
        stylize.min_size,
        bound=bound,
        strength=strength_maps(s.alpha, s.strength_map),
    )
    seconds = time.perf_counter() - start
    report = {
        "model": str(s.model),
        "family": stylize.family,
        "style": s.style,
        "alpha": s.alpha,
        "strength_map": s.strength_map,
        "color": im.color,
        "outputs": names,
    }
    write_json(report, output_dir / "apply.json")
    return applied("apply_fast", report, seconds, s, out_dir)
