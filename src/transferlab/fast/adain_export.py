"""The export_adain task: the whole AdaIN pipeline of a train_adain checkpoint (encoder, AdaIN, decoder)
as ONNX (dynamic content N, H, W and style h, w) and a torch.export program through the one exporter
(``transferlab.exporter``), each run against PyTorch at odd sizes other than the traced example's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from transferlab import exporter, memory
from transferlab.errors import ConfigError
from transferlab.fast.arbitrary.networks import EXPORT_MIN_SIZES, MIN_SIZE, Pipeline
from transferlab.fast.arbitrary.settings import ExportAdaINSettings
from transferlab.fast.stylizer import read_network
from transferlab.result import TaskResult

INPUTS = ("content", "style")


def signature(min_side: int = MIN_SIZE) -> exporter.Signature:
    """Content: dynamic N, H, W; style: batch 1, dynamic h, w; every side >= ``min_side``."""
    dims = (exporter.image_dims(min_side), exporter.image_dims(min_side, "style_", batch=False))
    return exporter.Signature(INPUTS, "stylized", dims)


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = ExportAdaINSettings.from_cfg(cfg)
    _, net, spec = read_network(s.checkpoint, family="arbitrary")
    pipeline = Pipeline(net, s.alpha).eval()
    min_side = EXPORT_MIN_SIZES[spec["arch"]]
    for key, sizes in (("task.check_size", s.check_size), ("task.style_check_size", s.style_check_size)):
        if min(sizes) < min_side:
            raise ConfigError(
                f"{key}={list(sizes)} is invalid for a {spec['arch']} network; its exported pipeline takes sides "
                f">= {min_side} px (relu5_1 at least 2x2)"
            )
    side = s.example_size
    # Content and style pixels alike (the style only passes the encoder: an upper bound).
    pixels = max(2 * side * side + side * (side + 16), 3 * math.prod(s.check_size) + math.prod(s.style_check_size))
    memory.check(
        memory.footprint(lambda x: pipeline(x, x), MIN_SIZE).peak(pixels),
        "cpu",
        f"task.example_size={side}, task.check_size={list(s.check_size)}, "
        f"task.style_check_size={list(s.style_check_size)}",
        "choose smaller sizes (any size exercises the dynamic dims)",
    )
    g = torch.Generator().manual_seed(s.seed)
    example = (torch.rand(2, 3, side, side, generator=g), torch.rand(1, 3, side, side + 16, generator=g))
    check = (torch.rand(3, 3, *s.check_size, generator=g), torch.rand(1, 3, *s.style_check_size, generator=g))
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "alpha": s.alpha,
        "inputs": {
            "content": {"shape": ["N", 3, "H", "W"], "dtype": "float32", "values": "RGB in [0, 1]"},
            "style": {"shape": [1, 3, "h", "w"], "dtype": "float32", "values": "RGB in [0, 1]"},
        },
        "output": {"name": "stylized", "shape": ["N", 3, "H", "W"], "values": "RGB in [0, 1]"},
        "min_side": min_side,
    }
    result = exporter.export(pipeline, example, check, signature(min_side), s.export, output_dir, report)
    return exporter.task_result(result, s)
