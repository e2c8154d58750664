"""The export_fast task: a train_fast checkpoint's network as model.onnx (dynamic N, H, W), model.pt2
(``torch.export``) and model.int8.onnx through the one exporter (``transferlab.exporter``), each run against
PyTorch at an odd size other than the traced example's; export.json records the errors and sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from transferlab import exporter, memory
from transferlab.fast.per_style.networks import MIN_SIZE
from transferlab.fast.settings import ExportSettings
from transferlab.fast.stylizer import read_network
from transferlab.result import TaskResult

SIGNATURE = exporter.Signature(("image",), "stylized", (exporter.image_dims(MIN_SIZE),))


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
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "network": spec,
        "inputs": {"image": {"shape": ["N", 3, "H", "W"], "dtype": "float32", "values": "RGB in [0, 1]"}},
        "output": {"name": "stylized", "shape": ["N", 3, "H", "W"], "values": "RGB in [0, 1]"},
        "min_side": MIN_SIZE,
    }
    return exporter.task_result(exporter.export(network, example, check, SIGNATURE, s.export, output_dir, report), s)
