"""`python run.py` end to end: bad input in one line, a 2-process DDP fine-tune, a parallel joblib sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import CLASSES, FAST, make_dataset, run_cli

pytestmark = pytest.mark.slow  # each test runs the command line in a subprocess


def test_missing_root_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "task=finetune", f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: data.root={tmp_path / 'nowhere'} does not exist or is not a folder; point it at an ImageFolder dataset"
    ]


def test_ddp_two_cpu_processes_gloo(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    run = tmp_path / "run"
    args = [a for a in FAST if not a.startswith("task.epochs")]
    result = run_cli(
        *args,
        "task.epochs=1",
        f"data.root={root}",
        f"hydra.run.dir={run}",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "verbose=true",  # Lightning's lines name the backend and the processes
        cwd=tmp_path,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "distributed_backend=gloo" in output and "MEMBER: 2/2" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classes"] == list(CLASSES) and metrics["epochs"] == 1
    assert (run / "checkpoints" / "best.ckpt").is_file()


def test_joblib_launcher_runs_a_sweep_in_parallel(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "launcher=joblib",
        "task=extract",
        "model=vgg16",
        "model.weights=null",
        f"task.input={root / 'val'}",
        "task.layers=[relu1_1]",
        "task.resize_size=32",
        "task.crop_size=32",
        "task.num_workers=0",
        "trainer.accelerator=cpu",
        "task.pool=true,false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    assert sorted(p.parent.name for p in sweep.glob("*/features.pt")) == [
        "0_task.pool-True",
        "1_task.pool-False",
    ]  # as Hydra writes the job overrides
