"""A sweep through hydra-submitit-launcher's local executor: the code path SLURM jobs take
(each job pickled into the submitit folder, run in its own process, its result collected)."""

import json

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow


def test_stylize_sweep_runs_through_submitit(tmp_path, content_path, style_path):
    result = run_cli(
        "-m",
        "launcher=submitit_local",
        "model.weights=null",
        f"task.content={content_path}",
        f"task.style={style_path}",
        "task.size=32",
        "task.steps=2",
        "trainer.accelerator=cpu",
        "loss.style_weight=1e2,1e4",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    for job in ("0_loss.style_weight-100.0", "1_loss.style_weight-10000.0"):
        assert (sweep / job / "final.png").is_file()
        assert json.loads((sweep / job / "metrics.json").read_text())["weights"] == "random"
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # submitit ran and returned each job
    assert (sweep / "contact_sheet.png").is_file()
