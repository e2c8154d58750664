"""The export_adain task: the whole AdaIN pipeline of a train_adain checkpoint (encoder, AdaIN, decoder)
as ONNX (dynamic content N, H, W and style h, w) and a torch.export program, each run against PyTorch
at odd sizes other than the traced example's (fast/export.py's machinery); export.json records the errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from transferlab.fast.arbitrary.networks import MIN_SIZE, Pipeline
from transferlab.fast.arbitrary.settings import ExportAdaINSettings
from transferlab.fast.export import export_checked
from transferlab.fast.stylizer import read_network

INPUTS = ("content", "style")


def dynamic_shapes() -> tuple[dict[int, torch.export.Dim], dict[int, torch.export.Dim]]:
    """Content: dynamic N, H, W; style: batch 1, dynamic h, w; every side >= MIN_SIZE."""

    def side(name: str) -> torch.export.Dim:
        return torch.export.Dim(name, min=MIN_SIZE, max=16384)

    batch = torch.export.Dim("batch", min=1, max=1024)
    return {0: batch, 2: side("height"), 3: side("width")}, {2: side("style_height"), 3: side("style_width")}


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    s = ExportAdaINSettings.from_cfg(cfg)
    pipeline = Pipeline(read_network(s.checkpoint, family="arbitrary")[1], s.alpha).eval()
    g = torch.Generator().manual_seed(s.seed)
    side = s.example_size
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
    return export_checked(
        pipeline,
        example,
        check,
        s.formats,
        output_dir,
        s.opset,
        s.atol,
        report,
        "export_adain",
        input_names=INPUTS,
        dynamic_shapes=dynamic_shapes(),
    )
