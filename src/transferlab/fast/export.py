"""The export_fast task: a train_fast checkpoint's network as model.onnx (dynamic N, H, W), model.pt2
(``torch.export``) and model.int8.onnx (static QDQ, calibrated on ``task.calibration``'s photos; dynamic when
it is null) through the one exporter (``transferlab.exporter``), each run against PyTorch at an odd size other
than the traced example's; export.json records the errors, sizes and the int8 method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from transferlab import exporter, fetch, images, memory
from transferlab.errors import ImageError
from transferlab.fast.per_style.networks import MIN_SIZE
from transferlab.fast.settings import ExportSettings
from transferlab.fast.stylizer import read_network
from transferlab.result import TaskResult

SIGNATURE = exporter.Signature(("image",), "stylized", (exporter.image_dims(MIN_SIZE),))
# int8's calibration: the scales come from the activations' ranges, which instance norm keeps alike at any
# size; a few photos at a moderate side calibrate in seconds.
CALIBRATION_SIDE = 256
CALIBRATION_IMAGES = 8


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = ExportSettings.from_cfg(cfg)
    _, network, spec = read_network(s.checkpoint, family="per_style")
    side = s.example_size
    pixels = max(2 * side * side, 3 * s.check_size[0] * s.check_size[1])  # the example's run or the check's
    memory.check(
        memory.footprint(network, MIN_SIZE).peak(pixels),
        "cpu",
        f"task.example_size={side}, task.check_size={list(s.check_size)}",
        "choose smaller sizes (any size exercises the dynamic dims)",
    )
    g = torch.Generator().manual_seed(s.seed)
    example = (torch.rand(2, 3, side, side, generator=g),)
    check = (torch.rand(3, 3, *s.check_size, generator=g),)  # other batch and odd size: dynamic dims exercised
    calibration = calibration_photos(s.calibration) if s.calibration else []
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "network": spec,
        "inputs": {"image": {"shape": ["N", 3, "H", "W"], "dtype": "float32", "values": "RGB in [0, 1]"}},
        "output": {"name": "stylized", "shape": ["N", 3, "H", "W"], "values": "RGB in [0, 1]"},
        "min_side": MIN_SIZE,
    }
    if "int8" in s.export.formats:
        report["int8_quantization"] = (
            {
                "method": "static",
                "calibration": s.calibration,
                "images": len(calibration),
                "long_side": CALIBRATION_SIDE,
            }
            if calibration
            else {"method": "dynamic"}
        )
    result = exporter.export(network, example, check, SIGNATURE, s.export, output_dir, report, calibration)
    return exporter.task_result(result, s)


def calibration_photos(source: str) -> list[tuple[torch.Tensor]]:
    """The images of ``source`` (a file, a folder, a ``sample:`` or ``dataset:`` name; at most
    ``CALIBRATION_IMAGES``) at long side ``CALIBRATION_SIDE``, as the network's inputs."""
    path = fetch.resolve(source, "task.calibration")
    paths = images.list_images(path)[:CALIBRATION_IMAGES] if path.is_dir() else [path]
    if not paths:
        raise ImageError(f"task.calibration={source} holds no images; give photos, or null for dynamic int8")
    return [(images.load_image(p, CALIBRATION_SIDE).unsqueeze(0),) for p in paths]
