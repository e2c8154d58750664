"""`python run.py task=train_fast` end to end, then apply_fast on its checkpoint; bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import make_image, run_cli

pytestmark = pytest.mark.slow

# 32 px images: one thread is as fast, and on a shared CPU two wait on each other (tests/fast/conftest.py).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_empty_photo_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    style = make_image(tmp_path / "style.png")
    result = run_cli(
        "task=train_fast",
        f"data.root={tmp_path / 'empty'}",
        f"task.style={style}",
        "model.weights=null",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: data.root=") and "holds no images" in lines[-1]


def test_train_then_apply(tmp_path: Path) -> None:
    for i in range(5):
        make_image(tmp_path / "photos" / f"{i}.png", size=(48, 40), seed=i)
    style = make_image(tmp_path / "style.png", seed=9)
    run = tmp_path / "train"
    result = run_cli(
        "task=train_fast",
        f"data.root={tmp_path / 'photos'}",
        f"task.style={style}",
        "model.weights=null",
        "trainer.accelerator=cpu",
        "data.crop=32",
        "data.val_size=32",
        "data.val_count=1",
        "data.batch_size=2",
        "data.num_workers=0",
        "task.steps=2",
        "task.val_every=2",
        "task.style_size=32",
        "fastnet=light",
        "fastnet.width=0.25",
        "fastnet.blocks=1",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    result = run_cli(
        "task=apply_fast",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"task.input={tmp_path / 'photos'}",
        f"hydra.run.dir={tmp_path / 'apply'}",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "apply" / "stylized").glob("*.png"))) == 5
