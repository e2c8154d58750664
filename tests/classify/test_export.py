"""task=export of the fine-tuned test run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import CLASSES, compose_cfg
from transferlab import main
from transferlab.classify import module as classifier


@pytest.mark.slow
def test_export_matches_pytorch(trained: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("task=export", f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}")
    main.run_task(cfg, tmp_path)
    report = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("pt2", "onnx"):
        assert report[name]["within_tolerance"] and report[name]["max_abs_diff"] <= 1e-4
    assert json.loads((tmp_path / "export.json").read_text())["classes"] == list(CLASSES)
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    module = classifier.load(trained / "checkpoints" / "best.ckpt")
    x = torch.rand(5, 3, 32, 32)
    torch.testing.assert_close(program(x), module(x), atol=1e-4, rtol=1e-4)
