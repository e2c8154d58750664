"""`python run.py -m task=train_fast` end to end (a sweep, its contact sheet), then apply_fast on a job's
checkpoint; bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import TINY_DATA, assert_quiet, make_image, run_cli

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


def test_style_weight_sweep_writes_a_contact_sheet_then_apply(tmp_path: Path) -> None:
    """A 2-job sweep over loss.style_weight: each job its run dir and its final validation photos,
    one contact sheet (a row per job, a tile per photo); then apply_fast on a job's checkpoint."""
    for i in range(5):
        make_image(tmp_path / "photos" / f"{i}.png", size=(48, 40), seed=i)
    style = make_image(tmp_path / "style.png", seed=9)
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "task=train_fast",
        f"data.root={tmp_path / 'photos'}",
        f"task.style={style}",
        *TINY_DATA,
        "task.steps=2",
        "task.val_every=2",
        "task.style_size=32",
        "fastnet=light",
        "fastnet.width=0.25",
        "fastnet.blocks=1",
        "loss.style_weight=1e4,1e5",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0_loss.style_weight-10000.0", "1_loss.style_weight-100000.0"):
        assert json.loads((sweep / job / "metrics.json").read_text())["steps"] == 2
        assert sorted(p.name for p in (sweep / job / "val_final").iterdir()) == ["00.png", "01.png"]
    sheet = Image.open(sweep / "contact_sheet.png")
    assert sheet.width == 2 * 256 and sheet.height > 2 * 256  # 2 photos a row, 2 rows with captions
    result = run_cli(
        "task=apply_fast",
        f"ckpt_path={sweep / '0_loss.style_weight-10000.0' / 'checkpoints' / 'last.ckpt'}",
        f"task.input={tmp_path / 'photos'}",
        f"hydra.run.dir={tmp_path / 'apply'}",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "apply" / "stylized").glob("*.png"))) == 5
    assert_quiet(result, tmp_path / "apply")
