"""Training at scale end to end: train_fast on two CPU processes (DDP, gloo), interrupted and resumed
equals uninterrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import TINY_DATA, make_image, run_cli

pytestmark = pytest.mark.slow  # each run starts two processes


def test_ddp_resume_on_two_processes_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    for i in range(8):
        make_image(tmp_path / "photos" / f"{i}.png", size=(40 + 4 * i, 36), seed=i)
    style = make_image(tmp_path / "style.png", size=(40, 40), seed=99)
    args = [
        "task=train_fast",
        *TINY_DATA,
        f"data.root={tmp_path / 'photos'}",
        f"task.style={style}",
        "task.style_size=40",
        "fastnet=light",
        "fastnet.width=0.25",
        "fastnet.blocks=1",
        "task.steps=4",
        "task.val_every=2",
        "task.checkpoint_every=2",
        "trainer.devices=2",
        "trainer.strategy=ddp",
    ]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    first = run_cli(*args, f"hydra.run.dir={whole}", cwd=tmp_path, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = f"ckpt_path={whole / 'checkpoints' / 'step2.ckpt'}"  # the run as if stopped at step 2
    second = run_cli(*args, f"hydra.run.dir={resumed}", ckpt, cwd=tmp_path, timeout=400)
    assert second.returncode == 0, second.stderr[-3000:]
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (whole, resumed))
    assert a["train_fast"]["world_size"] == 2 and a["global_step"] == 4
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert json.loads((resumed / "metrics.json").read_text())["steps"] == 4
    assert sorted(p.name for p in (whole / "val_final").iterdir()) == ["00.png", "01.png"]  # written once
