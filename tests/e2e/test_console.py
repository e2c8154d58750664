"""What a normal run prints (transferlab.console): no third-party warnings, tips or model summary, and a last
line that says where the results are; ``verbose=true`` brings Lightning's lines back."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ADAIN_TINY, FAST, assert_quiet, make_dataset, make_image, run_cli

pytestmark = pytest.mark.slow  # each test runs the command line in a subprocess


def test_finetune_then_export_print_only_their_own_lines(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    run = tmp_path / "run"
    args = [a for a in FAST if not a.startswith("task.epochs")]
    result = run_cli(*args, "task.epochs=1", f"data.root={root}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result, run)
    export = tmp_path / "export"
    args = ["task=export", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "task.formats=[onnx]"]
    result = run_cli(*args, f"hydra.run.dir={export}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result, export)


def test_train_adain_prints_only_its_own_lines_and_verbose_brings_lightnings_back(tmp_path: Path) -> None:
    for i in range(4):
        make_image(tmp_path / "photos" / f"{i}.png", size=(48, 40), seed=i)
        make_image(tmp_path / "styles" / f"{i}.png", size=(48, 40), seed=10 + i)
    data = [f"data.root={tmp_path / 'photos'}", f"task.styles={tmp_path / 'styles'}", "task.steps=1"]
    run = tmp_path / "run"
    result = run_cli(*ADAIN_TINY, *data, f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result, run)
    result = run_cli(*ADAIN_TINY, *data, "verbose=true", f"hydra.run.dir={tmp_path / 'verbose'}", cwd=tmp_path)
    assert result.returncode == 0 and "GPU available" in result.stdout + result.stderr
