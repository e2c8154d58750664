"""The apply_fast task: stylize an image, a list or a folder with a trained network, from a train_fast
checkpoint or an exported ONNX model; any size (output size = input size), batched by size, with a
progress bar; outputs written atomically into <run dir>/stylized/."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from transferlab import color, images, memory
from transferlab.errors import ImageError, WeightsError
from transferlab.exporter import onnx_runner
from transferlab.fast import data
from transferlab.fast.module import load_network
from transferlab.fast.networks import MIN_SIZE
from transferlab.fast.settings import ApplySettings
from transferlab.fast.tiled import Bounded
from transferlab.files import write_json

log = logging.getLogger(__name__)


def load_stylizer(path: Path, device: str = "cpu", key: str = "ckpt_path") -> Callable[[Tensor], Tensor]:
    """A ``[N, 3, H, W] -> [N, 3, H, W]`` function from a checkpoint (.ckpt) or an ONNX file; errors
    name ``key``, the config key the path came from."""
    if path.suffix.lower() == ".onnx":
        return load_onnx(path, key, "an export_fast model.onnx", ("image",))
    network = load_network(path, key)[0].to(device)

    def stylize(batch: Tensor) -> Tensor:
        with torch.inference_mode():
            return network(batch.to(device)).float().cpu()

    return stylize


def load_onnx(path: Path, key: str, expected: str, inputs: tuple[str, ...]) -> Callable[..., Tensor]:
    """An ONNX Runtime session on the exported model ``path`` whose inputs are ``inputs``; a WeightsError
    in one line for any other file."""
    try:
        return onnx_runner(path, inputs=inputs)
    except Exception as exc:  # noqa: BLE001 - any ORT load failure means the same to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{key}={path} is not a readable ONNX model of this task: {first}; give {expected}"
        ) from None


def gather(inputs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        files.extend(data.list_images(path, "task.input") if path.is_dir() else [path])
    return files


def preserve_colors(stylized: Tensor, content: Tensor, mode: str) -> Tensor:
    """Keep the content's colours: its chroma under the stylized luminance, or its colour statistics."""
    if mode == "luminance":
        return color.recombine(stylized, content)
    if mode == "histogram":
        return color.match_histogram(stylized, content)
    return stylized


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
) -> dict[str, str]:
    """``stylize`` (``[N, 3, H, W] -> [N, 3, H, W]``) over ``files``: each resized to long side ``size``
    (None: its own size), batched by size, colours kept per ``color_mode``, written atomically as
    ``out_dir/<stem>.<fmt>`` (a stem seen twice gets ``_1``, ...); returns ``{input: output}``. ``bound``
    checks every image's size against memory before any is decoded, and runs ``stylize`` within it."""
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
                result = preserve_colors(stylize(batch), batch, color_mode)
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


def run(cfg: DictConfig, output_dir: Path) -> dict[str, str]:
    s = ApplySettings.from_cfg(cfg)
    files = gather(s.images.inputs)
    stylize = load_stylizer(s.model, s.device)
    # A checkpoint's network is measured (an ONNX model's memory is ONNX Runtime's): its pixels are local,
    # so an image too large for memory is stylized in tiles.
    bound = None
    if s.model.suffix.lower() != ".onnx":
        bound = Bounded(
            stylize, lambda: memory.footprint(stylize, MIN_SIZE), memory.budget(s.device), MIN_SIZE, True, s.device
        )
    out_dir = output_dir / "stylized"
    names = stylize_files(
        files, stylize, out_dir, s.images.size, s.images.batch_size, s.images.color, s.images.format, bound=bound
    )
    write_json({"model": str(s.model), "color": s.images.color, "outputs": names}, output_dir / "apply.json")
    log.info("apply_fast: %d images into %s", len(names), out_dir)
    return names
