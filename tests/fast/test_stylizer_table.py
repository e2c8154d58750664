"""The same crafted stylizer files handed to every task that takes one (issue 32: rows = crafted inputs,
columns = tasks): apply_fast, apply_adain, export_fast, export_adain and video (method=fast) each refuse
them in one line, through the one stylizer loader, with no pickle run and nothing built first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import compose_cfg, make_image
from tests.fast.test_stylizer import (
    PER_STYLE,
    _classifier,
    _endless,
    _nan_weight,
    arbitrary_ckpt,
    per_style_ckpt,
)
from tests.video.conftest import square_frames, write_clip
from transferlab import main
from transferlab.errors import TransferLabError
from transferlab.fast import stylizer

MARKER = Path("/tmp/transferlab-stylizer-table-pwned")
TASKS = ["apply_fast", "apply_adain", "export_fast", "export_adain", "video"]
TAKES_ONNX = ["apply_fast", "apply_adain", "video"]  # the exports start from a checkpoint


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def craft(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.ckpt"
    if kind == "malicious":
        torch.save({"state_dict": Payload(), "hyper_parameters": {"network": PER_STYLE}}, path)
    elif kind == "garbage":
        path.write_bytes(os.urandom(2048))
    elif kind == "plain_dict":
        torch.save({"state_dict": {}}, path)
    elif kind == "million_blocks":
        per_style_ckpt(path, {**PER_STYLE, "blocks": 10**6})
    elif kind == "hparams_list":
        torch.save({"state_dict": {}, "hyper_parameters": [1, 2]}, path)
    elif kind == "nan_per_style":
        per_style_ckpt(path, nan=True)
    elif kind == "inf_arbitrary":
        arbitrary_ckpt(path, nan=True)
    else:
        path = {"onnx_classifier": _classifier, "onnx_nan_weight": _nan_weight, "onnx_endless_loop": _endless}[kind](
            folder / f"{kind}.onnx"
        )
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    return {
        "photos": make_image(folder / "photo.png", (40, 32), seed=1),
        "style": make_image(folder / "style.png", (36, 36), seed=2),
        "clip": write_clip(folder / "clip.mp4", square_frames(n=2)),
    }


def task_cfg(task: str, model: Path, inputs: dict[str, Path]):
    if task == "video":
        return compose_cfg(
            "task=video",
            f"task.input={inputs['clip']}",
            "task.method=fast",
            f"task.network={model}",
            "model.weights=null",
        )
    common = (f"task={task}", f"ckpt_path={model}")
    if task.startswith("export"):
        return compose_cfg(*common)
    style = (f"task.style={inputs['style']}",) if task == "apply_adain" else ()
    return compose_cfg(*common, f"task.input={inputs['photos']}", *style)


CKPT_ROWS = ["malicious", "garbage", "plain_dict", "million_blocks", "hparams_list", "nan_per_style", "inf_arbitrary"]
ONNX_ROWS = ["onnx_classifier", "onnx_nan_weight", "onnx_endless_loop"]


@pytest.mark.parametrize(
    "kind,task",
    [(k, t) for k in CKPT_ROWS for t in TASKS] + [(k, t) for k in ONNX_ROWS for t in TAKES_ONNX],
)
def test_every_task_refuses_a_crafted_stylizer_in_one_line(kind, task, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(stylizer, "ONNX_TIMEOUT_S", 1.0)
    MARKER.unlink(missing_ok=True)
    model = craft(kind, tmp_path)
    with pytest.raises(TransferLabError) as info:
        main.run_task(task_cfg(task, model, inputs), tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and "weights_only=False" not in message
    assert not MARKER.exists()
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.onnx"))
