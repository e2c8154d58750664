"""Convergence of the stylize optimization: found, reported (log, metrics.json, the last line) and acted on."""

import json
import logging

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import stylize_cfg
from transferlab import images, main
from transferlab.style import task as stylize
from transferlab.style.module import GRADIENT, NO_CHANGE, NO_PROGRESS
from transferlab.style.settings import StyleSettings


def fitted(content_path, style_path, *overrides, steps=20):
    settings = StyleSettings.from_cfg(stylize_cfg(content_path, style_path, f"task.steps={steps}", *overrides))
    pl.seed_everything(settings.seed, verbose=False)  # the same random VGG weights in every call
    module, _ = stylize.build(settings)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module)
    return module, trainer


@pytest.mark.parametrize(
    "overrides, reason",
    [
        # torch's own optimality test: it returns at the start of the step without moving
        (["optimizer.tolerance_grad=1e-3"], GRADIENT),
        # the slope along L-BFGS's direction is above -tolerance_change: torch breaks off before its line search
        (["optimizer.tolerance_change=1e-3"], NO_PROGRESS),
        # a fixed step that moves no pixel by more than tolerance_change (torch leaves this unchecked at max_iter=1)
        (["optimizer.line_search=null", "optimizer.lr=1e-7"], NO_CHANGE),
        # Adam: the best loss fell by less than 5% over the last 3 steps
        (["optimizer=adam", "task.tolerance=0.05", "task.tolerance_window=3"], NO_PROGRESS),
    ],
)
def test_a_converged_run_stops_early_and_says_why(content_path, style_path, overrides, reason):
    module, trainer = fitted(content_path, style_path, *overrides)
    [converged] = module.converged
    assert converged.reason == reason and converged.scale == 0 and converged.size == 32
    assert trainer.global_step == converged.step < 20
    assert converged.evaluations == module.evaluations


def test_with_stop_at_convergence_off_every_step_runs(content_path, style_path):
    module, trainer = fitted(
        content_path, style_path, "optimizer=adam", "task.tolerance=0.05", "task.tolerance_window=3", steps=8
    )
    stopped_at = module.converged[0].step
    module, trainer = fitted(
        content_path,
        style_path,
        "optimizer=adam",
        "task.tolerance=0.05",
        "task.tolerance_window=3",
        "task.stop_at_convergence=false",
        steps=8,
    )
    assert trainer.global_step == 8 > stopped_at
    assert [c.step for c in module.converged] == [stopped_at]  # reported once, where it happened


def test_run_reports_convergence_in_metrics_and_the_last_line(tmp_path, content_path, style_path, caplog):
    cfg = stylize_cfg(content_path, style_path, "task.steps=30", "optimizer.tolerance_grad=1e-3")
    with caplog.at_level(logging.INFO, logger="transferlab.style"):
        main.run_task(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    [converged] = metrics["converged"]
    assert converged["reason"] == GRADIENT and converged["step"] == metrics["steps"] < 30
    last = [r.message for r in caplog.records if r.name == "transferlab.style.task"][-1]
    assert f"after {metrics['steps']} of 30 steps" in last
    assert f"converged at step {metrics['steps']} ({GRADIENT}" in last


@pytest.mark.slow
def test_a_converged_coarse_scale_moves_on_to_the_next(tmp_path, content_path, style_path):
    cfg = stylize_cfg(
        content_path,
        style_path,
        "task.scales=[32]",
        "task.scale_steps=[20]",
        "task.steps=20",
        "optimizer=adam",
        "task.tolerance=0.05",
        "task.tolerance_window=3",
        size=48,
    )
    main.run_task(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    coarse, fine = metrics["converged"]
    assert (coarse["scale"], coarse["size"], fine["scale"], fine["size"]) == (0, 32, 1, 48)
    assert coarse["step"] < 20 and fine["step"] == metrics["steps"] < coarse["step"] + 20
    scales = [s.value for s in EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("train/scale")]
    assert scales == [0] * coarse["step"] + [1] * (fine["step"] - coarse["step"])
    assert images.load_image(tmp_path / "final.png").shape == (3, 40, 48)


@pytest.mark.slow
def test_a_run_resumed_after_a_converged_scale_ends_at_the_same_image(tmp_path, content_path, style_path):
    common = ("task.scales=[32]", "task.scale_steps=[20]", "optimizer=adam", "task.tolerance=0.05")
    common += ("task.tolerance_window=3", "task.image_every=0")
    main.run_task(stylize_cfg(content_path, style_path, *common, "task.steps=6", size=48), tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    coarse = whole["converged"][0]["step"]
    every = f"task.checkpoint_every={coarse + 2}"  # two steps into the finer scale
    main.run_task(stylize_cfg(content_path, style_path, *common, every, "task.steps=2", size=48), tmp_path / "first")
    checkpoint = next((tmp_path / "first" / "checkpoints").glob("step*.ckpt"))
    resume = (*common, "task.steps=6", f"ckpt_path={checkpoint}")
    main.run_task(stylize_cfg(content_path, style_path, *resume, size=48), tmp_path / "resumed")
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert resumed["steps"] == whole["steps"] and resumed["converged"][0] == whole["converged"][0]
    assert torch.equal(
        images.load_image(tmp_path / "whole" / "final.png"), images.load_image(tmp_path / "resumed" / "final.png")
    )
