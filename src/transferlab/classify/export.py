"""The export task: a fine-tuned classifier as ONNX and a ``torch.export`` program (and int8 ONNX on request)
through the one exporter (``transferlab.exporter``), each checked against PyTorch on other inputs than traced.

Exported models take a float batch ``[N, 3, crop, crop]`` of RGB in [0, 1] (any N) and return logits;
the normalization is inside them. export.json records the classes, the input and the measured errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from transferlab import exporter
from transferlab.classify import module as classifier
from transferlab.classify.settings import ExportSettings
from transferlab.result import TaskResult

SIGNATURE = exporter.Signature(("image",), "logits", ({0: torch.export.Dim("batch", min=1, max=exporter.MAX_BATCH)},))


def run(cfg: DictConfig, output_dir: Path) -> TaskResult:
    """Writes model.pt2 (torch.export), model.onnx and export.json into ``output_dir``."""
    s = ExportSettings.from_cfg(cfg)
    module = classifier.load(s.checkpoint)
    network = module.inference_network()
    crop = module.hparams.preprocessing["crop"]
    g = torch.Generator().manual_seed(s.seed)
    example = (torch.rand(2, 3, crop, crop, generator=g),)
    # A different batch size than the example's shows that the batch dimension stays dynamic.
    check = (torch.rand(3, 3, crop, crop, generator=g),)
    report: dict[str, Any] = {
        "checkpoint": str(s.checkpoint.resolve()),
        "classes": module.classes,
        "inputs": {
            "image": {
                "shape": ["N", 3, crop, crop],
                "dtype": "float32",
                "values": "RGB in [0, 1]; normalization is inside the model",
            }
        },
        "output": {"name": "logits", "shape": ["N", len(module.classes)]},
    }
    return exporter.task_result(exporter.export(network, example, check, SIGNATURE, s.export, output_dir, report), s)
