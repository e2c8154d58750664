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
from transferlab.fast.arbitrary.networks import MIN_SIZE, Pipeline
from transferlab.fast.arbitrary.settings import ExportAdaINSettings
from transferlab.fast.stylizer import read_network
from transferlab.result import TaskResult

INPUTS = ("content", "style")
# Content: dynamic N, H, W; style: batch 1, dynamic h, w; every side >= MIN_SIZE.
SIGNATURE = exporter.Signature(
    INPUTS, "stylized", (exporter.image_dims(MIN_SIZE), exporter.image_dims(MIN_SIZE, "style_", batch=False))
)


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    s = ExportAdaINSettings.from_cfg(cfg)
    pipeline = Pipeline(read_network(s.checkpoint, family="arbitrary")[1], s.alpha).eval()
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
        "min_side": MIN_SIZE,
    }
    return exporter.task_result(exporter.export(pipeline, example, check, SIGNATURE, s.export, output_dir, report), s)
